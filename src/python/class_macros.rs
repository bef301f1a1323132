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
/// propagate (returns `False`); `exit_method!(Class, method(exc), ...)`
/// passes the block's exception too: `self.method(py, exc)`.
macro_rules! exit_method {
    ($class:ident, $method:ident(exc), $(#[$doc:meta])*) => {
        $crate::python::class_macros::exit_method!(
            @exit $class, [$(#[$doc])*], |this, py, exc| this.$method(py, exc)
        );
    };
    ($class:ident, $method:ident, $(#[$doc:meta])*) => {
        $crate::python::class_macros::exit_method!(
            @exit $class, [$(#[$doc])*], |this, py, _exc| this.$method(py)
        );
    };
    (@exit $class:ident, [$(#[$doc:meta])*], |$this:ident, $py:ident, $exc:ident| $call:expr) => {
        #[pyo3::pymethods]
        impl $class {
            $(#[$doc])*
            fn __exit__(
                &self,
                $py: Python<'_>,
                _exc_type: &Bound<'_, PyAny>,
                $exc: &Bound<'_, PyAny>,
                _tb: &Bound<'_, PyAny>,
            ) -> PyResult<bool> {
                let $this = self;
                $call?;
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
