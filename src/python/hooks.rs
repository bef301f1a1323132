//! The Python hooks of a pool of Python objects (factory, reset, validate,
//! destroy) and the core's `Hooks` over them, which also block without the
//! GIL. Shared by `ObjectPool` and `TieredPool`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyType};
use pyo3::{intern, PyTraverseError};

use super::args;
use crate::limit::Park;
use crate::{Hooks, ResetOn};

/// How objects are reset.
enum Reset {
    /// Call ``obj.reset()`` when the object's class defines a callable ``reset``.
    Auto,
    /// Never.
    Off,
    /// Call this with the object.
    With(Py<PyAny>),
}

/// The hooks a pool was created with.
pub struct ObjectHooks {
    factory: Py<PyAny>,
    reset: Reset,
    validate: Option<Py<PyAny>>,
    destroy: Option<Py<PyAny>>,
    /// The first class seen by automatic reset, and whether it has `reset`:
    /// a pool usually holds one class, so the lookup is done once. Shown to
    /// the garbage collector (see `traverse`): a class that refers to the
    /// pool (a class attribute) would otherwise close a cycle it cannot see.
    reset_lookup: OnceLock<(Py<PyType>, bool)>,
}

impl ObjectHooks {
    pub fn new(
        factory: Bound<'_, PyAny>,
        reset: Option<Bound<'_, PyAny>>,
        validate: Option<Bound<'_, PyAny>>,
        destroy: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        if !factory.is_callable() {
            return Err(args::type_error("factory", "callable", &factory));
        }
        let reset = match reset {
            None => Reset::Auto,
            Some(r) if r.is_none() => Reset::Auto,
            Some(r) if r.is(&*PyBool::new(r.py(), false)) => Reset::Off,
            Some(r) if r.is_callable() => Reset::With(r.unbind()),
            Some(r) => return Err(args::type_error("reset", "callable, None or False", &r)),
        };
        Ok(ObjectHooks {
            factory: factory.unbind(),
            reset,
            validate: args::optional_callable(validate, "validate")?,
            destroy: args::optional_callable(destroy, "destroy")?,
            reset_lookup: OnceLock::new(),
        })
    }

    pub fn factory(&self) -> &Py<PyAny> {
        &self.factory
    }

    /// Hooks for one call. `size`: the argument the factory is called with
    /// (tiered pools), or `None` for a zero-argument factory.
    pub fn bound<'a, 'py>(&'a self, py: Python<'py>, size: Option<usize>) -> PyHooks<'a, 'py> {
        PyHooks {
            py,
            hooks: self,
            size,
        }
    }

    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.factory)?;
        if let Reset::With(f) = &self.reset {
            visit.call(f)?;
        }
        visit.call(&self.validate)?;
        visit.call(&self.destroy)?;
        match self.reset_lookup.get() {
            Some((class, _)) => visit.call(class),
            None => Ok(()),
        }
    }
}

/// `reset_on=` and the `reset_on` property: `"put"` (the default) or `"get"`.
pub const RESET_ON: [(&str, ResetOn); 2] = [("put", ResetOn::Put), ("get", ResetOn::Get)];

/// The core's [`Hooks`] for Python objects, for one call.
pub struct PyHooks<'a, 'py> {
    py: Python<'py>,
    hooks: &'a ObjectHooks,
    size: Option<usize>,
}

impl PyHooks<'_, '_> {
    fn has_reset_method(&self, item: &Py<PyAny>) -> PyResult<bool> {
        let py = self.py;
        let item = item.bind(py);
        if let Some((seen, has)) = self.hooks.reset_lookup.get() {
            // A pointer comparison: no reference counting on the hot path.
            if seen.as_ptr().cast() == item.get_type_ptr() {
                return Ok(*has);
            }
        }
        let ty = item.get_type();
        let has = ty
            .getattr_opt(intern!(py, "reset"))?
            .is_some_and(|attr| attr.is_callable());
        self.hooks.reset_lookup.get_or_init(|| (ty.unbind(), has));
        Ok(has)
    }
}

impl Hooks<Py<PyAny>> for PyHooks<'_, '_> {
    type Error = PyErr;

    fn create(&mut self) -> PyResult<Py<PyAny>> {
        match self.size {
            None => self.hooks.factory.call0(self.py),
            Some(size) => self.hooks.factory.call1(self.py, (size,)),
        }
    }

    fn reset(&mut self, item: &Py<PyAny>) -> PyResult<()> {
        match &self.hooks.reset {
            Reset::Off => Ok(()),
            Reset::With(f) => f.call1(self.py, (item,)).map(drop),
            Reset::Auto => {
                if self.has_reset_method(item)? {
                    item.call_method0(self.py, intern!(self.py, "reset"))
                        .map(drop)
                } else {
                    Ok(())
                }
            }
        }
    }

    fn validate(&mut self, item: &Py<PyAny>) -> PyResult<bool> {
        match &self.hooks.validate {
            None => Ok(true),
            Some(f) => f.call1(self.py, (item,))?.is_truthy(self.py),
        }
    }

    fn destroy(&mut self, item: Py<PyAny>) {
        if let Some(f) = &self.hooks.destroy {
            if let Err(err) = f.call1(self.py, (&item,)) {
                err.write_unraisable(self.py, Some(f.bind(self.py)));
            }
        }
    }

    /// A factory error while refilling to `min_size`: no caller to raise
    /// it to, so it goes where hook errors go.
    fn report(&mut self, err: PyErr) {
        err.write_unraisable(self.py, Some(self.hooks.factory.bind(self.py)));
    }

    fn identity(&self, item: &Py<PyAny>) -> usize {
        item.as_ptr() as usize
    }

    fn duplicate(&mut self, item: &Py<PyAny>) -> Py<PyAny> {
        item.clone_ref(self.py)
    }

    /// Waits detached from the interpreter, in slices, so that other threads
    /// run meanwhile and Ctrl-C (signal handlers) still get through.
    fn park(&mut self, waiter: &dyn Park, deadline: Option<Instant>) -> PyResult<bool> {
        const SLICE: Duration = Duration::from_millis(50);
        loop {
            let slice_end = Instant::now() + SLICE;
            let until = deadline.map_or(slice_end, |d| d.min(slice_end));
            if self.py.detach(|| waiter.park(Some(until))) {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            self.py.check_signals()?;
        }
    }
}
