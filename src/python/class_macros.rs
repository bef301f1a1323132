//! Methods several classes share, generated so that they are written once:
//! `Class[T]` for the generic classes, a context manager's `__exit__`, and
//! properties that read the core.

/// `generic_class!(Class)`: `Class[T]` for type annotations.
macro_rules! generic_class {
    ($class:ident) => {
        #[pyo3::pymethods]
        impl $class {
            #[doc = concat!("``", stringify!($class), "[T]`` for type annotations.")]
            #[classmethod]
            fn __class_getitem__<'py>(
                cls: &Bound<'py, pyo3::types::PyType>,
                item: &Bound<'py, PyAny>,
            ) -> PyResult<Bound<'py, PyAny>> {
                pyo3::types::PyGenericAlias::new(cls.py(), cls.as_any(), item).map(Bound::into_any)
            }
        }
    };
}

/// `exit_method!(Class, method, /// docs)`: `__exit__(exc_type, exc, tb)`
/// that calls `self.method(py)` and lets any exception of the block
/// propagate (returns `False`).
macro_rules! exit_method {
    ($class:ident, $method:ident, $(#[$doc:meta])*) => {
        #[pyo3::pymethods]
        impl $class {
            $(#[$doc])*
            fn __exit__(
                &self,
                py: Python<'_>,
                _exc_type: &Bound<'_, PyAny>,
                _exc: &Bound<'_, PyAny>,
                _tb: &Bound<'_, PyAny>,
            ) -> PyResult<bool> {
                self.$method(py)?;
                Ok(false)
            }
        }
    };
}

/// `core_getters!(Class { /// docs  name: Type = method, ... })`: read-only
/// properties that return `self.core.method()`.
macro_rules! core_getters {
    ($class:ident { $($(#[$doc:meta])* $name:ident: $ty:ty = $method:ident,)* }) => {
        #[pyo3::pymethods]
        impl $class {
            $(
                $(#[$doc])*
                #[getter]
                fn $name(&self) -> $ty {
                    self.core.$method()
                }
            )*
        }
    };
}

pub(crate) use core_getters;
pub(crate) use exit_method;
pub(crate) use generic_class;
