//! The PyO3 binding: thin classes over the core, compiled only with the
//! `python` feature. Pool logic lives in the core; this layer converts
//! arguments, runs Python hooks, and maps core errors to Python exceptions.

use pyo3::prelude::*;

mod aio;
mod args;
mod block_pool;
mod borrow;
mod buffer_pool;
mod class_macros;
mod discard;
mod errors;
mod gc_clock;
mod hooks;
mod interpreter;
mod lent;
mod logging;
mod naming;
mod object_pool;
mod pool_class;
mod raw_method;
mod reuse;
mod sizing;
mod stats;
mod tiered_pool;
mod timeout;
mod tracking;
mod waiting;

/// Runs the core's slow work (memory work, waiting for another thread)
/// detached from the interpreter, so other Python threads run meanwhile.
struct Detached<'py>(Python<'py>);

impl crate::blocks::Offload for Detached<'_> {
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.0.detach(f)
    }
}

/// Adds each class to the module, and checks at compile time that it needs
/// no more than the 16-byte alignment Python allocates objects with (a
/// cache-padded field stored inline would be misaligned).
macro_rules! add_classes {
    ($module:ident, $($class:ty),* $(,)?) => {
        $(
            const _: () = assert!(std::mem::align_of::<$class>() <= 16);
            $module.add_class::<$class>()?;
        )*
    };
}

/// `shardpool._core`: the compiled part of shardpool. Import from `shardpool`.
///
/// Declared free-threading capable (`gil_used = false`): every class is
/// frozen and keeps its shared state in atomics, lock-free queues or locks.
#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // With a GIL no two calls run at once: the pools need no per-thread
    // budget credits or calibration counts. The abi3 wheel knows it at
    // compile time (`shards::SERIALIZED_BUILD`); this build asks.
    #[cfg(not(feature = "abi3"))]
    crate::shards::set_callers_serialized(interpreter::gil_build(py)?);
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("PoolTimeout", py.get_type::<errors::PoolTimeout>())?;
    m.add("PoolClosed", py.get_type::<errors::PoolClosed>())?;
    m.add("PoolTooBusy", py.get_type::<errors::PoolTooBusy>())?;
    add_classes!(
        m,
        object_pool::ObjectPool,
        borrow::Borrow,
        tiered_pool::TieredPool,
        stats::PoolStats,
        block_pool::BlockPool,
        block_pool::Block,
        stats::BlockPoolStats,
        stats::BlockClassStats,
        buffer_pool::BufferPool,
        buffer_pool::Buffer,
        waiting::Waiting,
        gc_clock::GcClock,
    );
    object_pool::install_raw_methods(py)?;
    borrow::install_raw_methods(py)?;
    block_pool::install_raw_methods(py)?;
    buffer_pool::install_raw_methods(py)?;
    m.add("DEFAULT_MAX_IDLE", crate::Config::DEFAULT_MAX_IDLE)?;
    m.add_function(wrap_pyfunction!(_attached_noop, m)?)?;
    // A child process forked while threads waited on a bounded pool must
    // not hand objects to those threads: they do not exist in the child.
    let after_fork = wrap_pyfunction!(_after_fork_in_child, m)?;
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("after_in_child", &after_fork)?;
    py.import("os")?
        .getattr("register_at_fork")?
        .call((), Some(&kwargs))?;
    m.add_function(wrap_pyfunction!(_detached_noop, m)?)?;
    m.add_function(wrap_pyfunction!(_idle_slot_bytes, m)?)?;
    Ok(())
}

/// Does nothing, attached: the cost of a call into the extension. For
/// ``python -m shardpool bench``.
#[pyfunction]
fn _attached_noop() {}

/// Registered with ``os.register_at_fork``: see ``limit::note_fork``.
#[pyfunction]
fn _after_fork_in_child() {
    crate::limit::note_fork();
}

/// Detaches from the interpreter and attaches again at once: the fixed cost
/// of letting other threads run, which shardpool pays only where the work
/// (waiting, zeroing or allocating large blocks) costs more. For the bench.
#[pyfunction]
fn _detached_noop(py: Python<'_>) {
    py.detach(|| ());
}

/// Bytes one idle object costs an `ObjectPool`'s storage: the queue slot's
/// sequence stamp plus the idle entry (the object reference and its
/// timestamp). For the bench's memory section.
#[pyfunction]
fn _idle_slot_bytes() -> usize {
    std::mem::size_of::<usize>() + crate::pool::idle_entry_size::<Py<PyAny>>()
}
