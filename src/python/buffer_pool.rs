//! `BufferPool` and `Buffer`: growable byte buffers for building output.

use std::ffi::c_int;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyBufferError, PyMemoryError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView};

use super::args;
use super::errors::{warn_unreleased, PoolClosed};
use super::identity::{Identified, Identity};
use super::stats::PoolStats;
use crate::buffers;
use crate::Config;

/// A pool of growable byte buffers that learns the sizes of recent use.
///
/// ``BufferPool(*, max_idle=None, max_capacity=None, idle_timeout=None,
/// shards=None, name=None, track=False)``
///
/// ``get()`` hands out an empty ``Buffer``; write to it, send it (it exports
/// its bytes through the buffer protocol), and give it back by leaving the
/// ``with`` block or calling ``release()``. Returned buffers are cleared and
/// keep their capacity. The pool gives new buffers the size seen most often
/// recently, and does not keep buffers far above the 95th percentile of
/// recent sizes, so one rare huge response does not pin memory.
///
/// Args:
///     max_idle: How many idle buffers to keep (default 1024).
///     max_capacity: Buffers above this capacity are never kept (16 MiB).
///     idle_timeout: Seconds an idle buffer is kept.
///     shards: Number of shards (default: the number of CPUs).
///     name: A name for ``repr()``, warnings and metrics labels.
///     track: Record where each buffer is acquired, for ``outstanding()``
///         and the ``ResourceWarning`` of ``close()`` and of buffers
///         collected without release.
#[pyclass(frozen, weakref, module = "shardpool", name = "BufferPool")]
pub struct BufferPool {
    core: Arc<Shared>,
}

/// The pool's core and identity, shared with what it hands out.
type Shared = Identified<buffers::BufferPool>;

#[pymethods]
impl BufferPool {
    #[new]
    #[pyo3(signature = (
        *, max_idle=None, max_capacity=None, idle_timeout=None, shards=None, name=None, track=None
    ))]
    fn new(
        max_idle: Option<Bound<'_, PyAny>>,
        max_capacity: Option<Bound<'_, PyAny>>,
        idle_timeout: Option<Bound<'_, PyAny>>,
        shards: Option<Bound<'_, PyAny>>,
        name: Option<Bound<'_, PyAny>>,
        track: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let identity = Identity::new(name.as_ref(), track.as_ref())?;
        let config = Config {
            max_idle: args::optional_count(max_idle.as_ref(), "max_idle")?,
            shards: args::optional_count(shards.as_ref(), "shards")?,
            idle_timeout: args::seconds(idle_timeout.as_ref(), "idle_timeout")?.0,
            ..Config::default()
        };
        let max_capacity = args::optional_count(max_capacity.as_ref(), "max_capacity")?;
        let core = buffers::BufferPool::new(config, max_capacity)
            .map_err(|e| PyValueError::new_err(e.message))?;
        Ok(BufferPool {
            core: Arc::new(Identified { core, identity }),
        })
    }

    /// An empty ``Buffer``.
    fn get(&self, py: Python<'_>) -> PyResult<Buffer> {
        if self.core.is_closed() {
            return Err(PoolClosed::new_err("the pool is closed"));
        }
        let data = self
            .core
            .get()
            .map_err(|_| PoolClosed::new_err("the pool is closed"))?;
        let ticket = self.core.identity.ticket();
        self.core.identity.acquired(py, ticket);
        Ok(Buffer {
            state: Mutex::new(State {
                data: Some(data),
                exports: 0,
                pending: false,
            }),
            pool: Arc::clone(&self.core),
            ticket,
        })
    }

    /// Release ``buf`` back to this pool (the same as ``buf.release()``).
    #[pyo3(signature = (buf, /))]
    fn put(&self, buf: &Bound<'_, Buffer>) -> PyResult<()> {
        let b = buf.get();
        if !Arc::ptr_eq(&b.pool, &self.core) {
            return Err(PyValueError::new_err(
                "put() of a buffer from another BufferPool",
            ));
        }
        b.release()
    }

    /// Counters (``PoolStats``).
    fn stats(&self) -> PoolStats {
        self.core.stats().into()
    }

    /// Idle buffers.
    fn __len__(&self) -> usize {
        self.core.idle()
    }

    /// Drop expired idle buffers, then the oldest until at most ``keep``
    /// remain. Returns how many were dropped.
    #[pyo3(signature = (keep=None))]
    fn trim(&self, keep: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
        Ok(self
            .core
            .trim(args::optional_count(keep, "keep")?.unwrap_or(0)))
    }

    /// Drop every idle buffer. Returns how many were dropped.
    fn clear(&self) -> usize {
        self.core.trim(0)
    }

    /// Drop idle buffers; ``get`` raises ``PoolClosed`` from now on. With
    /// ``track=True``, warns (``ResourceWarning``) where the buffers still
    /// out were acquired.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.core.close();
        self.core
            .identity
            .warn_if_outstanding(py, "BufferPool", "buffer(s)")
    }

    /// Where each buffer still out was acquired (formatted stacks, oldest
    /// first). Needs ``track=True``; raises ``RuntimeError`` otherwise.
    fn outstanding(&self) -> PyResult<Vec<String>> {
        self.core.identity.outstanding_sites()
    }

    /// The pool's name (``name=``), or ``None``.
    #[getter]
    fn name(&self) -> Option<&str> {
        self.core.identity.name()
    }

    /// Whether acquisition sites are recorded (``track=True``).
    #[getter]
    fn track(&self) -> bool {
        self.core.identity.is_tracking()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.core.is_closed()
    }

    /// The capacity new buffers get: the size seen most often recently.
    #[getter]
    fn typical_capacity(&self) -> usize {
        self.core.calibrator().typical()
    }

    /// The 95th-percentile size of recent use, or ``None`` before the pool
    /// has seen enough to tell. Buffers above twice this are not kept.
    #[getter]
    fn large_capacity(&self) -> Option<usize> {
        Some(self.core.calibrator().large()).filter(|&l| l != usize::MAX)
    }

    #[getter]
    fn max_capacity(&self) -> usize {
        self.core.max_capacity()
    }

    #[getter]
    fn max_idle(&self) -> usize {
        self.core.max_idle()
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let s = self.core.stats();
        format!(
            "<BufferPool{}{} idle={} in_use={} typical_capacity={}>",
            self.core.identity.repr_part(),
            if self.core.is_closed() { " closed" } else { "" },
            s.idle,
            s.in_use,
            self.core.calibrator().typical()
        )
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(PyTypeError::new_err("cannot pickle 'BufferPool' object"))
    }
}

struct State {
    /// `None` once released.
    data: Option<Vec<u8>>,
    /// Live buffer-protocol exports; the data may not move while any is alive.
    exports: usize,
    /// Let go while exported: the last export gives the data back.
    pending: bool,
}

/// A growable byte buffer from a ``BufferPool``.
///
/// ``write(data)`` (or ``buf += data``) appends; ``getvalue()`` copies the
/// contents into ``bytes``; the buffer also exports its contents, read-only
/// and zero-copy, through the buffer protocol (``sock.sendall(buf)``,
/// ``memoryview(buf)``). While an export is alive the buffer cannot change
/// (``BufferError``), as with ``bytearray``. Give it back with ``release()``
/// or by leaving ``with pool.get() as buf:``.
#[pyclass(frozen, weakref, module = "shardpool", name = "Buffer")]
pub struct Buffer {
    /// Held only for short, Python-free sections.
    state: Mutex<State>,
    pool: Arc<Shared>,
    /// The buffer's key in its pool's tracker (0 when not tracking).
    ticket: u64,
}

/// Makes room for `n` more bytes, or raises `MemoryError` (as `bytearray`
/// does) instead of aborting the process.
fn grow(buf: &mut Vec<u8>, n: usize) -> PyResult<()> {
    buf.try_reserve(n).map_err(|_| {
        PyMemoryError::new_err(format!(
            "cannot grow a Buffer of {} bytes by {n} bytes",
            buf.len()
        ))
    })
}

fn released() -> PyErr {
    PyValueError::new_err("operation on a released buffer")
}

impl Buffer {
    /// Gives the bytes back: the buffer is no longer out.
    fn give_back(&self, data: Vec<u8>) {
        self.pool.identity.returned(self.ticket);
        self.pool.put(data);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The data, for a change: refused after release and while exported.
    fn with_data<R>(&self, f: impl FnOnce(&mut Vec<u8>) -> PyResult<R>) -> PyResult<R> {
        let mut state = self.lock();
        if state.pending {
            return Err(released());
        }
        if state.exports > 0 {
            return Err(PyBufferError::new_err(
                "cannot change a Buffer while a view of it (a memoryview) is alive",
            ));
        }
        match state.data.as_mut() {
            Some(data) => f(data),
            None => Err(released()),
        }
    }

    fn release(&self) -> PyResult<()> {
        let data = {
            let mut state = self.lock();
            if state.data.is_none() || state.pending {
                return Err(PyValueError::new_err("the buffer was released already"));
            }
            if state.exports > 0 {
                return Err(PyBufferError::new_err(format!(
                    "cannot release a Buffer while {} view(s) of it are alive",
                    state.exports
                )));
            }
            state.data.take()
        };
        if let Some(data) = data {
            self.give_back(data);
        }
        Ok(())
    }

    fn append(&self, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        if let Ok(bytes) = data.cast::<PyBytes>() {
            let src = bytes.as_bytes();
            return self.with_data(|buf| {
                grow(buf, src.len())?;
                buf.extend_from_slice(src);
                Ok(src.len())
            });
        }
        // Exported before locking: exporting `data` may run Python code.
        let src = PyUntypedBuffer::get(data).map_err(|_| {
            PyTypeError::new_err(format!(
                "a bytes-like object is required, not '{}'",
                data.get_type()
                    .name()
                    .map_or_else(|_| "?".into(), |n| n.to_string())
            ))
        })?;
        if !src.is_c_contiguous() {
            // Rare (a strided view): let Python make it contiguous.
            let flat = PyMemoryView::from(data)?.call_method0("tobytes")?;
            drop(src);
            return self.append(&flat);
        }
        let n = src.len_bytes();
        self.with_data(|buf| {
            grow(buf, n)?;
            // SAFETY: the export `src` keeps `buf_ptr` valid and contiguous
            // for `len_bytes` bytes while it lives; `grow` made room for
            // `n` more bytes after `len`, which the copy then initialises.
            // The copy goes through raw pointers: the source may be shared.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    src.buf_ptr().cast::<u8>(),
                    buf.as_mut_ptr().add(buf.len()),
                    n,
                );
                buf.set_len(buf.len() + n);
            }
            Ok(n)
        })
    }
}

#[pymethods]
impl Buffer {
    /// Append a bytes-like object; returns the number of bytes written.
    #[pyo3(signature = (data, /))]
    fn write(&self, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        self.append(data)
    }

    /// Append a bytes-like object.
    #[pyo3(signature = (data, /))]
    fn extend(&self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        self.append(data).map(drop)
    }

    fn __iadd__(&self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        self.append(data).map(drop)
    }

    /// A ``bytes`` copy of the contents.
    fn getvalue<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let state = self.lock();
        match (&state.data, state.pending) {
            (Some(data), false) => Ok(PyBytes::new(py, data)),
            _ => Err(released()),
        }
    }

    /// Empty the buffer, keeping its capacity.
    fn clear(&self) -> PyResult<()> {
        self.with_data(|buf| {
            buf.clear();
            Ok(())
        })
    }

    /// Bytes the buffer holds without growing.
    #[getter]
    fn capacity(&self) -> PyResult<usize> {
        let state = self.lock();
        match (&state.data, state.pending) {
            (Some(data), false) => Ok(data.capacity()),
            _ => Err(released()),
        }
    }

    /// Whether the buffer was released.
    #[getter]
    fn released(&self) -> bool {
        let state = self.lock();
        state.data.is_none() || state.pending
    }

    /// Give the buffer back to its pool. Raises ``BufferError`` while views
    /// are alive, ``ValueError`` if released already.
    #[pyo3(name = "release")]
    fn py_release(&self) -> PyResult<()> {
        self.release()
    }

    fn __len__(&self) -> PyResult<usize> {
        let state = self.lock();
        match (&state.data, state.pending) {
            (Some(data), false) => Ok(data.len()),
            _ => Err(released()),
        }
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        if slf.get().released() {
            return Err(released());
        }
        Ok(slf)
    }

    /// Releases the buffer, or, while views are alive, lets the last view
    /// release it. Does nothing if it was released inside the block.
    fn __exit__(
        &self,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> bool {
        let data = {
            let mut state = self.lock();
            if state.exports > 0 {
                state.pending = state.data.is_some();
                None
            } else {
                state.data.take()
            }
        };
        if let Some(data) = data {
            self.give_back(data);
        }
        false
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        let (ptr, len) = {
            let mut state = this.lock();
            let data = match (&state.data, state.pending) {
                (Some(data), false) => (data.as_ptr(), data.len()),
                _ => return Err(PyBufferError::new_err("cannot export a released buffer")),
            };
            state.exports += 1;
            data
        };
        // SAFETY: CPython hands us a valid `view`. The data cannot move or
        // change while `exports > 0` (every change checks it under the
        // lock), so `ptr` stays valid for `len` bytes until the matching
        // `__releasebuffer__`. The export is read-only.
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                ptr as *mut _,
                len as ffi::Py_ssize_t,
                1,
                flags,
            )
        };
        if rc == -1 {
            this.end_export();
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.end_export();
    }

    fn __repr__(&self) -> String {
        let state = self.lock();
        match (&state.data, state.pending) {
            (Some(data), false) => {
                format!("<Buffer len={} capacity={}>", data.len(), data.capacity())
            }
            _ => "<Buffer released>".into(),
        }
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(PyTypeError::new_err(
            "cannot pickle 'Buffer' object: copy its bytes with getvalue()",
        ))
    }
}

impl Buffer {
    fn end_export(&self) {
        let data = {
            let mut state = self.lock();
            state.exports -= 1;
            if state.exports == 0 && state.pending {
                state.pending = false;
                state.data.take()
            } else {
                None
            }
        };
        if let Some(data) = data {
            self.give_back(data);
        }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(data) = state.data.take() {
            let len = data.len();
            let site = self.pool.identity.site(self.ticket);
            self.give_back(data);
            let mut message = format!(
                "a Buffer holding {len} bytes from {} was garbage-collected without release(); \
                 it went back to the pool. Use `with pool.get() as buf:`",
                self.pool.identity.describe("BufferPool")
            );
            if let Some(site) = site {
                message.push_str("; acquired at:\n");
                message.push_str(site.trim_end());
            }
            Python::attach(|py| warn_unreleased(py, message));
        }
    }
}
