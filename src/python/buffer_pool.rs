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
                exported: false,
                released: false,
                retired: Vec::new(),
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
    /// The bytes; `None` once given back to the pool.
    data: Option<Vec<u8>>,
    /// Live buffer-protocol exports; the data may not change while any is alive.
    exports: usize,
    /// Exported at some point of the lease. A consumer may then hold the
    /// address without an export (`np.ndarray(buffer=buf)` keeps only a
    /// reference to the buffer), so the bytes never move to another
    /// allocation and never go back to the pool before this object is
    /// destroyed.
    exported: bool,
    /// The holder let go (the bytes may stay, see `exported`).
    released: bool,
    /// Allocations the bytes outgrew after an export, freed with this object.
    retired: Vec<Vec<u8>>,
}

impl State {
    /// The bytes, while the holder has them.
    fn live(&self) -> Option<&Vec<u8>> {
        self.data.as_ref().filter(|_| !self.released)
    }

    /// Makes room for `n` more bytes, or raises `MemoryError` (as
    /// `bytearray` does) instead of aborting the process. After an export
    /// the bytes move to a new allocation and the old one stays alive (in
    /// `retired`) until this object is destroyed: a consumer may still read
    /// it.
    fn reserve(&mut self, n: usize) -> PyResult<()> {
        let Some(data) = self.data.as_mut() else {
            return Err(released());
        };
        if data.capacity() - data.len() >= n {
            return Ok(());
        }
        let len = data.len();
        let too_large =
            || PyMemoryError::new_err(format!("cannot grow a Buffer of {len} bytes by {n} bytes"));
        if !self.exported {
            return data.try_reserve(n).map_err(|_| too_large());
        }
        let needed = len.checked_add(n).ok_or_else(too_large)?;
        // Doubling, as `Vec` grows, so that repeated writes stay amortised.
        let wanted = needed.max(data.capacity().saturating_mul(2));
        let mut moved = Vec::new();
        moved
            .try_reserve_exact(wanted)
            .or_else(|_| moved.try_reserve_exact(needed))
            .map_err(|_| too_large())?;
        moved.extend_from_slice(data);
        self.retired.push(std::mem::replace(data, moved));
        Ok(())
    }
}

/// A growable byte buffer from a ``BufferPool``.
///
/// ``write(data)`` (or ``buf += data``) appends; ``getvalue()`` copies the
/// contents into ``bytes``; the buffer also exports its contents, read-only
/// and zero-copy, through the buffer protocol (``sock.sendall(buf)``,
/// ``memoryview(buf)``). While an export is alive the buffer cannot change
/// (``BufferError``), as with ``bytearray``. Give it back with ``release()``
/// or by leaving ``with pool.get() as buf:``. A buffer that was exported
/// goes back to the pool when the ``Buffer`` object is collected, and its
/// bytes never move while it lives (a write that outgrows them copies them
/// to new memory and keeps the old): ``np.ndarray(buffer=buf)`` keeps the
/// address without an export.
#[pyclass(frozen, weakref, module = "shardpool", name = "Buffer")]
pub struct Buffer {
    /// Held only for short, Python-free sections.
    state: Mutex<State>,
    pool: Arc<Shared>,
    /// The buffer's key in its pool's tracker (0 when not tracking).
    ticket: u64,
}

fn released() -> PyErr {
    PyValueError::new_err("operation on a released buffer")
}

impl Buffer {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state, for a change: refused after release and while exported.
    fn with_data<R>(&self, f: impl FnOnce(&mut State) -> PyResult<R>) -> PyResult<R> {
        let mut state = self.lock();
        if state.live().is_none() {
            return Err(released());
        }
        if state.exports > 0 {
            return Err(PyBufferError::new_err(
                "cannot change a Buffer while a view of it (a memoryview) is alive",
            ));
        }
        f(&mut state)
    }

    /// The holder lets go: the bytes go back now, unless the buffer was
    /// exported (then when this object is destroyed). With `unexported`,
    /// refused while an export is alive.
    fn let_go(&self, unexported: bool) -> PyResult<()> {
        let data = {
            let mut state = self.lock();
            if state.live().is_none() {
                return Err(PyValueError::new_err("the buffer was released already"));
            }
            if unexported && state.exports > 0 {
                return Err(PyBufferError::new_err(format!(
                    "cannot release a Buffer while {} view(s) of it are alive",
                    state.exports
                )));
            }
            state.released = true;
            if state.exported {
                None
            } else {
                state.data.take()
            }
        };
        self.pool.identity.returned(self.ticket);
        if let Some(data) = data {
            self.pool.put(data);
        }
        Ok(())
    }

    fn release(&self) -> PyResult<()> {
        self.let_go(true)
    }

    fn append(&self, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        if let Ok(bytes) = data.cast::<PyBytes>() {
            let src = bytes.as_bytes();
            return self.with_data(|state| {
                state.reserve(src.len())?;
                state
                    .data
                    .as_mut()
                    .ok_or_else(released)?
                    .extend_from_slice(src);
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
        self.with_data(|state| {
            state.reserve(n)?;
            let buf = state.data.as_mut().ok_or_else(released)?;
            // SAFETY: the export `src` keeps `buf_ptr` valid and contiguous
            // for `len_bytes` bytes while it lives; `reserve` made room for
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
        state
            .live()
            .map(|data| PyBytes::new(py, data))
            .ok_or_else(released)
    }

    /// Empty the buffer, keeping its capacity.
    fn clear(&self) -> PyResult<()> {
        self.with_data(|state| {
            state.data.as_mut().ok_or_else(released)?.clear();
            Ok(())
        })
    }

    /// Bytes the buffer holds without growing.
    #[getter]
    fn capacity(&self) -> PyResult<usize> {
        self.lock().live().map(Vec::capacity).ok_or_else(released)
    }

    /// Whether the buffer was released.
    #[getter]
    fn released(&self) -> bool {
        self.lock().live().is_none()
    }

    /// Give the buffer back to its pool. Raises ``BufferError`` while views
    /// are alive, ``ValueError`` if released already.
    #[pyo3(name = "release")]
    fn py_release(&self) -> PyResult<()> {
        self.release()
    }

    fn __len__(&self) -> PyResult<usize> {
        self.lock().live().map(Vec::len).ok_or_else(released)
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        if slf.get().released() {
            return Err(released());
        }
        Ok(slf)
    }

    /// Releases the buffer; views still alive keep working. Does nothing if
    /// it was released inside the block.
    fn __exit__(
        &self,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> bool {
        // Only refused when released already: a no-op then.
        let _ = self.let_go(false);
        false
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        if flags & ffi::PyBUF_WRITABLE != 0 {
            // Refused before counting: a refused export must not count as
            // one (see `State::exported`).
            return Err(PyBufferError::new_err("a Buffer is exported read-only"));
        }
        let (ptr, len) = {
            let mut state = this.lock();
            let Some(data) = state.live() else {
                return Err(PyBufferError::new_err("cannot export a released buffer"));
            };
            let view = (data.as_ptr(), data.len());
            state.exports += 1;
            state.exported = true;
            view
        };
        // SAFETY: CPython hands us a valid `view`. The data cannot change
        // while `exports > 0` (every change checks it under the lock), and
        // once exported its allocation stays alive until this object is
        // destroyed (`State::exported`), so `ptr` stays valid for `len`
        // bytes until the matching `__releasebuffer__` and beyond. `len <=
        // isize::MAX` (a `Vec`'s bound), so the cast is exact. The export is
        // read-only.
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
        match self.lock().live() {
            Some(data) => format!("<Buffer len={} capacity={}>", data.len(), data.capacity()),
            None => "<Buffer released>".into(),
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
        self.lock().exports -= 1;
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // Nothing can reach the bytes any more: every view, and every
        // consumer that kept the address, held a reference to this object.
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let Some(data) = state.data.take() else {
            return;
        };
        let (len, released) = (data.len(), state.released);
        self.pool.put(data);
        if released {
            return;
        }
        let site = self.pool.identity.site(self.ticket);
        self.pool.identity.returned(self.ticket);
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
