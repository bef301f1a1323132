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

/// `aio_methods!(Class, |slf| (params) (signature) => { args }, /// docs
/// method: "function"; ...)`: the asyncio entry points (`aget()`,
/// `aborrow()`), each of which checks its arguments at the call (so a bad
/// one fails there, not in the event loop), then hands the pool and `args`
/// to `function` of `shardpool._aio`.
macro_rules! aio_methods {
    (
        $class:ident, |$slf:ident| $params:tt $signature:tt => $args:block,
        $($(#[$doc:meta])* $method:ident: $function:literal;)*
    ) => {
        $($crate::python::aio::aio_methods!(
            @method $class, $slf, $params $signature $args, $(#[$doc])* $method $function
        );)*
    };
    (
        @method $class:ident, $slf:ident, ($($param:ident: $ty:ty),*) $signature:tt $args:block,
        $(#[$doc:meta])* $method:ident $function:literal
    ) => {
        #[pyo3::pymethods]
        impl $class {
            $(#[$doc])*
            #[pyo3(signature = $signature)]
            fn $method<'py>(
                $slf: &Bound<'py, Self>,
                $($param: $ty),*
            ) -> PyResult<Bound<'py, PyAny>> {
                let args = $args;
                $crate::python::aio::aio($slf.py())?.getattr($function)?.call1(($slf, args))
            }
        }
    };
}

pub(crate) use aio_methods;
