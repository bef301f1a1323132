//! `BufferPool` and `Buffer`: growable byte buffers for building output.

use std::ffi::c_int;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyBufferError, PyMemoryError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView};

use super::args;
use super::class_macros::core_getters;
use super::errors::PoolClosed;
use super::pool_class::{self, pool_methods, PoolClass};
use super::raw_method;
use super::reuse::{item_methods, reusable_class, Holder, PoolCore, Reusable};
use super::stats::PoolStats;
use crate::buffer_lease::{BufferError, LeasedBuffer};
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
    /// The core pool, with the spare `Buffer` objects of released buffers
    /// (see `reuse`), name and tracker, shared with the buffers it hands out.
    core: PoolCore<buffers::BufferPool>,
}

#[pymethods]
impl BufferPool {
    #[new]
    #[pyo3(signature = (
        *, max_idle=None, max_capacity=None, idle_timeout=None, shards=None, name=None, track=None
    ))]
    fn new(
        py: Python<'_>,
        max_idle: Option<Bound<'_, PyAny>>,
        max_capacity: Option<Bound<'_, PyAny>>,
        idle_timeout: Option<Bound<'_, PyAny>>,
        shards: Option<Bound<'_, PyAny>>,
        name: Option<Bound<'_, PyAny>>,
        track: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let labels = pool_class::labels(name.as_ref(), track.as_ref())?;
        let config = Config {
            max_idle: args::optional_count(max_idle.as_ref(), "max_idle")?,
            shards: args::optional_count(shards.as_ref(), "shards")?,
            idle_timeout: args::seconds(idle_timeout.as_ref(), "idle_timeout")?.0,
            ..Config::default()
        };
        let max_capacity = args::optional_count(max_capacity.as_ref(), "max_capacity")?;
        let buffers = buffers::BufferPool::new(config, max_capacity)
            .map_err(|e| PyValueError::new_err(e.message))?;
        Ok(BufferPool {
            core: PoolCore::new::<Buffer>(py, buffers, labels)?,
        })
    }

    /// Release ``buf`` back to this pool (the same as ``buf.release()``).
    #[pyo3(signature = (buf, /))]
    fn put(&self, buf: &Bound<'_, Buffer>) -> PyResult<()> {
        buf.get()
            .pool
            .check_put_to(&self.core, "buffer", "BufferPool")?;
        Holder::release(buf)
    }

    /// Counters (``PoolStats``).
    fn stats(&self) -> PoolStats {
        self.core.stats().into()
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
}

// `BufferPool.get`, `Buffer.release` and `Buffer.write`: hand-written
// method-table entries (see `raw_method`), installed on the classes by
// `install_raw_methods`.
raw_method::no_arg_method!(
    static GET: BufferPool, "get", "($self)", "An empty ``Buffer``.",
    |slf, py| {
        let core = &slf.get().core;
        let lease = core
            .lease()
            .map_err(|_| PoolClosed::new_err("the pool is closed"));
        lease.and_then(|lease| Buffer::hand_out(py, core, lease))
    }
);

raw_method::no_arg_method!(
    static RELEASE: Buffer, "release", "($self)",
    "Give the buffer back to its pool. Raises ``BufferError`` while views\n\
     are alive, ``ValueError`` if released already.",
    |slf, _py| Holder::release(slf)
);

raw_method::pyo3_signature_method!(
    static WRITE: Buffer, "write",
    raw_method::one_param("Buffer", "write", &["data"], 1),
    "($self, data, /)",
    "Append a bytes-like object; returns the number of bytes written.",
    |slf, _py, args| {
        let [Some(data)] = args else {
            unreachable!("the parser checks that a required argument is given")
        };
        slf.get().append(&data)
    }
);

/// Adds `BufferPool.get`, `Buffer.release` and `Buffer.write` to the
/// classes (once, at module initialisation).
pub fn install_raw_methods(py: Python<'_>) -> PyResult<()> {
    raw_method::install(&py.get_type::<BufferPool>(), &[&GET])?;
    raw_method::install(&py.get_type::<Buffer>(), &[&RELEASE, &WRITE])
}

impl PoolClass for BufferPool {
    fn close_core(&self, py: Python<'_>) {
        self.core.close();
        self.core.spares.close(py);
    }

    fn repr_fields(&self, _py: Python<'_>) -> PyResult<String> {
        let (s, typical) = (self.core.stats(), self.core.calibrator().typical());
        let (idle, in_use) = (s.idle, s.in_use);
        Ok(format!(
            "idle={idle} in_use={in_use} typical_capacity={typical}"
        ))
    }
}

pool_methods!(
    BufferPool,
    "buffer",
    idle,
    /// Drop idle buffers; ``get`` raises ``PoolClosed`` from now on. With
    /// ``track=True``, warns (``ResourceWarning``) where the buffers still
    /// out were acquired.
);

core_getters!(BufferPool {
    /// Buffers above this capacity are never kept.
    max_capacity: usize = max_capacity,
    /// The most idle buffers kept.
    max_idle: usize = max_idle,
});

reusable_class!(
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
    Buffer {
        lease: LeasedBuffer,
        pool: buffers::BufferPool,
    }
);

/// The Python exception for a refused buffer operation.
fn refused(error: BufferError) -> PyErr {
    match error {
        BufferError::Released => PyValueError::new_err("operation on a released buffer"),
        BufferError::Exported(_) => PyBufferError::new_err(
            "cannot change a Buffer while a view of it (a memoryview) is alive",
        ),
        BufferError::TooLarge { len, more } => PyMemoryError::new_err(format!(
            "cannot grow a Buffer of {len} bytes by {more} bytes"
        )),
    }
}

impl Buffer {
    fn append(&self, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        if let Ok(bytes) = data.cast::<PyBytes>() {
            let src = bytes.as_bytes();
            self.lease().append(src).map_err(refused)?;
            return Ok(src.len());
        }
        // Exported before the lease locks: exporting `data` may run Python
        // code (and exporting this buffer itself makes the append refused).
        let src = PyUntypedBuffer::get(data).map_err(|_| {
            let type_name = args::type_name(data);
            PyTypeError::new_err(format!(
                "a bytes-like object is required, not '{type_name}'"
            ))
        })?;
        if !src.is_c_contiguous() {
            // Rare (a strided view): let Python make it contiguous.
            let flat = PyMemoryView::from(data)?.call_method0("tobytes")?;
            drop(src);
            return self.append(&flat);
        }
        let n = src.len_bytes();
        // SAFETY: the export `src` keeps `buf_ptr` valid and contiguous for
        // `len_bytes` bytes while it lives, which spans the call.
        unsafe { self.lease().append_raw(src.buf_ptr().cast::<u8>(), n) }.map_err(refused)?;
        Ok(n)
    }
}

impl Holder for Buffer {
    type Refusal = BufferError;

    #[inline(always)]
    fn end_lease(&self, _py: Python<'_>, deferring: bool) -> Result<(), BufferError> {
        if deferring {
            self.pool.release_or_defer(self.lease())
        } else {
            self.pool.release(self.lease())
        }
    }

    fn refused(refusal: BufferError) -> PyErr {
        match refusal {
            BufferError::Released => PyValueError::new_err("the buffer was released already"),
            BufferError::Exported(n) => PyBufferError::new_err(format!(
                "cannot release a Buffer while {n} view(s) of it are alive"
            )),
            other => refused(other),
        }
    }
}

item_methods!(Buffer, "buffer", "getvalue()");

#[pymethods]
impl Buffer {
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
        // A bytes object is not tracked by the cyclic GC, so making one runs
        // no Python code that could come back to this buffer's lock.
        self.lease()
            .read(|data| PyBytes::new(py, data))
            .map_err(refused)
    }

    /// Empty the buffer, keeping its capacity.
    fn clear(&self) -> PyResult<()> {
        self.lease().clear().map_err(refused)
    }

    /// Bytes the buffer holds without growing.
    #[getter]
    fn capacity(&self) -> PyResult<usize> {
        self.lease().capacity().map_err(refused)
    }

    fn __len__(&self) -> PyResult<usize> {
        self.lease().len().map_err(refused)
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        if slf.get().released() {
            return Err(refused(BufferError::Released));
        }
        Ok(slf)
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        if flags & ffi::PyBUF_WRITABLE != 0 {
            // Refused before counting: a refused export must not count as
            // one (see `LeasedBuffer` in the core).
            return Err(PyBufferError::new_err("a Buffer is exported read-only"));
        }
        let (ptr, len) = this
            .lease()
            .export()
            .map_err(|_| PyBufferError::new_err("cannot export a released buffer"))?;
        // SAFETY: CPython hands us a valid `view`. The bytes cannot change
        // until the matching `__releasebuffer__`, and their allocation lives
        // until this object is destroyed (`LeasedBuffer` invariants), so
        // `ptr` stays valid for `len` bytes. `len <= isize::MAX` (a `Vec`'s
        // bound), so the cast is exact. The export is read-only.
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
            this.lease().unexport();
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    fn __repr__(&self) -> String {
        match (self.lease().len(), self.lease().capacity()) {
            (Ok(len), Ok(capacity)) => format!("<Buffer len={len} capacity={capacity}>"),
            _ => "<Buffer released>".into(),
        }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // Nothing can reach the bytes any more: every view, and every
        // consumer that kept the address, held a reference to this object.
        let Some((len, released)) = self.pool.finish(self.lease.get_mut()) else {
            return;
        };
        if !released {
            Python::attach(|py| {
                self.pool.collected_unreleased(
                    py,
                    &format!("a Buffer holding {len} bytes"),
                    "BufferPool",
                    "it went back to the pool. Use `with pool.get() as buf:`",
                );
            });
        }
    }
}
