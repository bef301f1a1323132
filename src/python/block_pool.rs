//! `BlockPool` and `Block`: pooled, aligned byte memory exported zero-copy
//! through the buffer protocol.

use std::ffi::c_int;

use pyo3::exceptions::{PyBufferError, PyMemoryError, PyValueError};
use pyo3::ffi;
use pyo3::impl_::extract_argument::{
    extract_argument_with_default, FunctionDescription, KeywordOnlyParameterDescription,
};
use pyo3::prelude::*;

use super::args;
use super::class_macros::core_getters;
use super::errors::PoolClosed;
use super::pool_class::{self, pool_methods, PoolClass};
use super::raw_method;
use super::reuse::{item_methods, reusable_class, Holder, PoolCore, Reusable};
use super::stats::BlockPoolStats;
use super::Detached;
use crate::blocks::{self, BlockConfig, BlockError, ZeroMode};
use crate::lease::{LeaseError, Leased};

/// `zero=` and the `zero` property.
const ZERO_MODES: [(&str, ZeroMode); 4] = [
    ("never", ZeroMode::Never),
    ("release", ZeroMode::Release),
    ("acquire", ZeroMode::Acquire),
    ("poison", ZeroMode::Poison),
];

/// A pool of byte blocks in size classes, handed out as ``Block`` objects
/// that expose their memory zero-copy (``memoryview``, ``recv_into``,
/// ``readinto``, ``numpy.frombuffer``, ``hashlib``, ``zlib``, ...).
///
/// ``BlockPool(*, classes=None, max_block=None, max_idle_bytes=None,
/// zero="never", alignment=64, idle_timeout=None, shards=None, name=None,
/// track=False)``
///
/// Args:
///     classes: Block sizes, or ``(size, max_idle)`` pairs, e.g. the layered
///         ``[(4096, 1000), (65536, 500), (1 << 20, 100)]``. Default: four
///         classes per doubling from 64 bytes to 256 KiB (a request wastes
///         at most 20% of its block), then 1 MiB, 4 MiB, 16 MiB (four times
///         apart) up to ``max_block``. Above 256 KiB a request whose class
///         has nothing idle takes an idle block of a larger class before
///         new memory, and a block's pages are made resident only as they
///         are written, so a coarse class costs address space, not memory.
///     max_block: The largest pooled size (default 16 MiB, or the largest
///         class). Larger requests get an exact block, freed on release.
///     max_idle_bytes: The most memory kept idle over all classes (default
///         64 MiB); a block released beyond it is freed.
///     zero: When memory is zeroed: ``"never"`` (a reused block holds what
///         its last holder wrote), ``"release"`` or ``"acquire"``. New memory
///         is always zero. ``"poison"``, for debugging, fills every released
///         block with the byte ``0xDB`` so that a use after release, or a
///         read before writing, shows a recognisable pattern.
///     alignment: Alignment of every block, a power of two up to 4096.
///     idle_timeout: Seconds an idle block is kept before it is freed.
///     shards: Shards per class (default: the number of CPUs).
///     name: A name for ``repr()``, warnings and metrics labels.
///     track: Record where each block is acquired, for ``outstanding()``
///         and the ``ResourceWarning`` of ``close()`` and of blocks
///         collected without release.
#[pyclass(frozen, weakref, module = "shardpool", name = "BlockPool")]
pub struct BlockPool {
    /// The core pool, with the spare `Block` objects of released blocks (see
    /// `reuse`), name and tracker, shared with the blocks it hands out.
    core: PoolCore<blocks::BlockPool>,
}

#[pymethods]
impl BlockPool {
    #[new]
    #[pyo3(signature = (
        *, classes=None, max_block=None, max_idle_bytes=None, zero=None, alignment=None,
        idle_timeout=None, shards=None, name=None, track=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        classes: Option<Bound<'_, PyAny>>,
        max_block: Option<Bound<'_, PyAny>>,
        max_idle_bytes: Option<Bound<'_, PyAny>>,
        zero: Option<Bound<'_, PyAny>>,
        alignment: Option<Bound<'_, PyAny>>,
        idle_timeout: Option<Bound<'_, PyAny>>,
        shards: Option<Bound<'_, PyAny>>,
        name: Option<Bound<'_, PyAny>>,
        track: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let labels = pool_class::labels(name.as_ref(), track.as_ref())?;
        let classes = match classes.filter(|c| !c.is_none()) {
            None => None,
            Some(c) => Some(args::size_specs(&c, "classes", "class")?),
        };
        let config = BlockConfig {
            classes,
            max_block: args::optional_count(max_block.as_ref(), "max_block")?,
            max_idle_bytes: args::optional_count(max_idle_bytes.as_ref(), "max_idle_bytes")?
                .unwrap_or(blocks::DEFAULT_MAX_IDLE_BYTES),
            zero: args::choice(zero.as_ref(), "zero", &ZERO_MODES)?,
            alignment: args::optional_count(alignment.as_ref(), "alignment")?
                .unwrap_or(blocks::DEFAULT_ALIGNMENT),
            idle_timeout: args::seconds(idle_timeout.as_ref(), "idle_timeout")?.0,
            shards: args::optional_count(shards.as_ref(), "shards")?,
        };
        let blocks =
            blocks::BlockPool::new(config).map_err(|e| PyValueError::new_err(e.message))?;
        Ok(BlockPool {
            core: PoolCore::new::<Block>(py, blocks, labels)?,
        })
    }

    /// Release ``block`` back to this pool (the same as ``block.release()``).
    /// Raises ``ValueError`` for a block of another pool.
    #[pyo3(signature = (block, /))]
    fn put(&self, block: &Bound<'_, Block>) -> PyResult<()> {
        block
            .get()
            .pool
            .check_put_to(&self.core, "block", "BlockPool")?;
        Holder::release(block)
    }

    /// Counters and gauges (``BlockPoolStats``), with one row per class used.
    fn stats(&self, py: Python<'_>) -> PyResult<BlockPoolStats> {
        BlockPoolStats::new(py, self.core.stats(), self.core.max_idle_bytes())
    }

    /// Free expired idle blocks, then more (largest classes first) until at
    /// most ``keep_bytes`` stay idle. Returns the bytes freed.
    #[pyo3(signature = (keep_bytes=None))]
    fn trim(&self, py: Python<'_>, keep_bytes: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
        let keep = args::optional_count(keep_bytes, "keep_bytes")?.unwrap_or(0);
        Ok(self.core.trim(keep, &Detached(py)))
    }

    /// Free every idle block. Returns the bytes freed.
    fn clear(&self, py: Python<'_>) -> usize {
        self.core.trim(0, &Detached(py))
    }

    /// The class sizes, smallest first.
    #[getter]
    fn classes(&self) -> Vec<usize> {
        self.core.classes().sizes().to_vec()
    }

    #[getter]
    fn zero(&self) -> &'static str {
        args::choice_name(&ZERO_MODES, self.core.zero())
    }
}

impl BlockPool {
    /// `get`'s body (the entry `GET` below parses its arguments).
    #[inline(always)]
    fn get_block<'py>(
        &self,
        py: Python<'py>,
        n: &Bound<'_, PyAny>,
        zeroed: bool,
    ) -> PyResult<Bound<'py, Block>> {
        let n = args::count(n, "n")?;
        match self.core.lease(n, zeroed, &Detached(py)) {
            Ok(leased) => Block::hand_out(py, &self.core, leased),
            Err(BlockError::Closed) => Err(PoolClosed::new_err("the pool is closed")),
            Err(BlockError::Alloc(e)) => Err(PyMemoryError::new_err(format!(
                "cannot allocate a block of {} bytes",
                e.size
            ))),
        }
    }
}

// `BlockPool.get` and `Block.release`: hand-written method-table entries
// (see `raw_method`), installed on the classes by `install_raw_methods`.
raw_method::pyo3_signature_method!(
    static GET: BlockPool, "get",
    FunctionDescription {
        cls_name: Some("BlockPool"),
        func_name: "get",
        positional_parameter_names: &["n"],
        positional_only_parameters: 1,
        required_positional_parameters: 1,
        keyword_only_parameters: &[KeywordOnlyParameterDescription {
            name: "zeroed",
            required: false,
        }],
    },
    "($self, n, /, *, zeroed=False)",
    "A ``Block`` of exactly ``n`` usable bytes (``len(block) == n``), from\n\
     the smallest class of at least ``n`` bytes (``block.capacity``).\n\
     With ``zeroed=True`` its bytes are zero whatever the pool's ``zero``\n\
     mode. Use it in a ``with`` block, or call ``block.release()``.",
    |slf, py, args| {
        let [n, zeroed] = args;
        let Some(n) = n else {
            unreachable!("the parser checks that a required argument is given")
        };
        // As `#[pymethods]` converts it (PyO3's message and note).
        let zeroed =
            extract_argument_with_default::<bool, true>(zeroed, &mut (), "zeroed", || false)?;
        slf.get().get_block(py, &n, zeroed)
    }
);

raw_method::no_arg_method!(
    static RELEASE: Block, "release", "($self)",
    "Give the block back to the pool. Raises ``BufferError`` while views\n\
     are alive (the block stays valid), ``ValueError`` if released already.\n\
     The memory of a block that was exported returns when the ``Block``\n\
     object is collected.",
    |slf, _py| Holder::release(slf)
);

/// Adds `BlockPool.get` and `Block.release` to the classes (once, at module
/// initialisation).
pub fn install_raw_methods(py: Python<'_>) -> PyResult<()> {
    raw_method::install(&py.get_type::<BlockPool>(), &[&GET])?;
    raw_method::install(&py.get_type::<Block>(), &[&RELEASE])
}

impl PoolClass for BlockPool {
    fn close_core(&self, py: Python<'_>) {
        self.core.close(&Detached(py));
        self.core.spares.close(py);
    }

    fn repr_fields(&self, _py: Python<'_>) -> PyResult<String> {
        let s = self.core.stats();
        Ok(format!(
            "classes={} max_block={} bytes_idle={} bytes_in_use={}",
            self.core.classes().len(),
            self.core.max_block(),
            s.bytes_idle,
            s.bytes_in_use
        ))
    }
}

pool_methods!(
    BlockPool,
    "block",
    idle_blocks,
    /// Free idle memory; ``get`` raises ``PoolClosed`` from now on, and
    /// blocks released later are freed. Blocks held stay valid. With
    /// ``track=True``, warns (``ResourceWarning``) where the blocks still
    /// out were acquired.
);

core_getters!(BlockPool {
    /// The largest pooled size; larger requests get an exact block.
    max_block: usize = max_block,
    /// The most memory kept idle over all classes.
    max_idle_bytes: usize = max_idle_bytes,
    /// The alignment of every block.
    alignment: usize = alignment,
});

reusable_class!(
    /// A block of pooled memory: ``len(block)`` usable bytes, writable, exported
    /// zero-copy through the buffer protocol.
    ///
    /// Give it back with ``block.release()`` or by leaving ``with pool.get(n) as
    /// block:``. ``release()`` raises ``BufferError`` while an export of the
    /// block (a ``memoryview``, ``np.frombuffer``) is alive; leaving the ``with``
    /// block instead lets live exports keep working. A released block can no
    /// longer be read or exported. A block that was never exported goes back to
    /// the pool at once; one that was exported goes back when the ``Block``
    /// object itself is collected, because a consumer such as
    /// ``np.ndarray(buffer=block)`` keeps the address and a reference to the
    /// block, but no export. A block collected without release goes back to
    /// its pool with a ``ResourceWarning``.
    Block {
        lease: Leased,
        pool: blocks::BlockPool,
    }
);

impl Block {
    fn check_live(&self) -> PyResult<()> {
        if self.lease().is_released() {
            Err(PyValueError::new_err("operation on a released block"))
        } else {
            Ok(())
        }
    }
}

impl Holder for Block {
    type Refusal = LeaseError;

    #[inline(always)]
    fn end_lease(&self, py: Python<'_>, deferring: bool) -> Result<(), LeaseError> {
        let (pool, offload) = (&self.pool, &Detached(py));
        if deferring {
            pool.release_or_defer(self.lease(), offload)
        } else {
            pool.release(self.lease(), offload)
        }
    }

    fn refused(refusal: LeaseError) -> PyErr {
        match refusal {
            LeaseError::Exported(n) => PyBufferError::new_err(format!(
                "cannot release a block while {n} view(s) of it (memoryview, numpy array, ...) are alive"
            )),
            LeaseError::Released => PyValueError::new_err("the block was released already"),
        }
    }
}

item_methods!(Block, "block", "bytes(block)");

#[pymethods]
impl Block {
    /// The size of the block's class (at least ``len(block)``).
    #[getter]
    fn capacity(&self) -> usize {
        self.lease().capacity()
    }

    fn __len__(&self) -> PyResult<usize> {
        self.check_live()?;
        Ok(self.lease().len())
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().check_live()?;
        Ok(slf)
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        let ptr = this
            .lease()
            .export()
            .map_err(|_| PyBufferError::new_err("cannot export a released block"))?;
        // `len <= capacity <= isize::MAX` (a `Layout` never exceeds it, and
        // the lease checks the first): the cast is exact.
        let len = this.lease().len() as ffi::Py_ssize_t;
        // SAFETY: CPython hands us a valid `view`; the memory behind `ptr`
        // stays valid for `len` bytes until `__releasebuffer__` ends this
        // export, and beyond, until this object is destroyed (lease
        // invariants). FillInfo takes a reference to `slf`.
        let rc = unsafe { ffi::PyBuffer_FillInfo(view, slf.as_ptr(), ptr.cast(), len, 0, flags) };
        if rc == -1 {
            this.lease().unexport();
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    fn __repr__(&self) -> String {
        if self.lease().is_released() {
            format!("<Block released capacity={}>", self.lease().capacity())
        } else {
            format!(
                "<Block len={} capacity={}>",
                self.lease().len(),
                self.lease().capacity()
            )
        }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // Nothing can reach the memory any more: every view, and every
        // consumer that kept the address, held a reference to this object.
        // Most blocks gave their memory back at the release: nothing to do.
        if !self.lease.get_mut().holds_memory() {
            return;
        }
        Python::attach(|py| {
            let capacity = self.lease().capacity();
            let Some(released) = self.pool.finish(self.lease.get_mut(), &Detached(py)) else {
                return;
            };
            if !released {
                self.pool.collected_unreleased(
                    py,
                    &format!("a Block of {capacity} bytes"),
                    "BlockPool",
                    "its memory went back to the pool. Use `with pool.get(n) as block:`",
                );
            }
        });
    }
}
