//! `shardpool._aio`, the asyncio glue the pools' `aget()` and `aborrow()`
//! hand their work to.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// The `shardpool._aio` module (imported on first use).
pub fn aio(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static AIO: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    AIO.get_or_try_init(py, || py.import("shardpool._aio").map(Bound::unbind))
        .map(|m| m.bind(py))
}
