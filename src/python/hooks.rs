//! The Python hooks of a pool of Python objects (factory, reset, validate,
//! destroy) and the core's `Hooks` over them, which also block without the
//! GIL. Shared by `ObjectPool` and `TieredPool`.
//!
//! What the hooks' results mean to the pool:
//! - `validate` answers `True` or `False`; anything else is a `TypeError`
//!   naming `validate` (the core destroys the object and the `get` raises).
//!   A validator that raises an `Exception` rejects the object: the core
//!   destroys it (`invalid`) and tries the next, and the exception is
//!   logged. A `BaseException` that is not an `Exception`
//!   (`KeyboardInterrupt`, `SystemExit`) propagates.
//! - Hooks run synchronously. A coroutine function is refused at
//!   construction; a hook that returns an awaitable anyway (a callable
//!   object with an `async def __call__`, a `reset` method that is `async`)
//!   is caught at its first call: the awaitable is closed (no "never
//!   awaited" warning) and a `TypeError` raised. Later calls are not
//!   checked: the check stays off the hot path.
//! - A failing `destroy` cannot be raised to anyone: it is logged (ERROR).
//!   Nor can a factory error while refilling to `min_size` (`report`).
//!   A `KeyboardInterrupt` there (Ctrl-C while the hook ran) is not only
//!   logged (WARNING) but raised again the way Ctrl-C raises it: the SIGINT
//!   handler runs in the main thread at its next check ([`interrupt_again`]),
//!   so the program stops as the user asked. Other `BaseException`s there
//!   (`SystemExit` from a hook) have no such route and are logged.

use std::sync::atomic::{AtomicPtr, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyException, PyKeyboardInterrupt, PyTypeError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyType};
use pyo3::{intern, PyTraverseError};

use super::args;
use super::logging::{self, Level};
use crate::limit::{park_in_slices, Park};
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
    /// The class of `reset_lookup` once it is known to have no `reset`
    /// (automatic reset only), else null: what a put compares an object's
    /// class with, one load instead of the `OnceLock`'s state, the flag and
    /// the class. Only compared, never dereferenced (`reset_lookup` holds
    /// the reference that keeps the class alive).
    no_reset: AtomicPtr<pyo3::ffi::PyTypeObject>,
    /// The hooks whose result has not been checked yet for an awaitable
    /// (a bit per hook).
    unchecked: AtomicU8,
    /// The pool, for log messages (`ObjectPool 'name'`).
    pool: String,
}

/// A bit of [`ObjectHooks::unchecked`] per hook.
#[derive(Clone, Copy)]
enum Hook {
    Factory = 1,
    Reset = 2,
    Validate = 4,
    Destroy = 8,
}

impl Hook {
    fn name(self) -> &'static str {
        match self {
            Hook::Factory => "factory",
            Hook::Reset => "reset",
            Hook::Validate => "validate",
            Hook::Destroy => "destroy",
        }
    }
}

/// Where the guide says how to use a pool from asyncio code.
const ASYNCIO_DOCS: &str = "docs/guide/concurrency.md, section asyncio";

/// `TypeError` for a coroutine function given as `name`.
fn refuse_coroutine_function(name: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
    let inspect = value.py().import("inspect")?;
    if inspect
        .call_method1("iscoroutinefunction", (value,))?
        .is_truthy()?
    {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a plain callable, not a coroutine function (async def): \
             a pool runs its hooks synchronously, inside get() and put(); \
             make it synchronous, or create the object before pooling it \
             (see {ASYNCIO_DOCS})"
        )));
    }
    Ok(())
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
        refuse_coroutine_function("factory", &factory)?;
        for (name, hook) in [
            ("reset", &reset),
            ("validate", &validate),
            ("destroy", &destroy),
        ] {
            if let Some(hook) = hook.as_ref().filter(|h| h.is_callable()) {
                refuse_coroutine_function(name, hook)?;
            }
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
            no_reset: AtomicPtr::new(std::ptr::null_mut()),
            unchecked: AtomicU8::new(0b1111),
            pool: "ObjectPool".into(),
        })
    }

    /// Names the pool in log messages (`ObjectPool 'name'`).
    pub fn describe_pool_as(&mut self, pool: String) {
        self.pool = pool;
    }

    /// The pool, as log messages name it.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// `result` of `hook`, checked for an awaitable if this is the hook's
    /// first call: an awaitable is closed and refused with a `TypeError`.
    #[inline(always)]
    fn first_call<'py>(
        &self,
        hook: Hook,
        result: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if self.unchecked.load(Ordering::Relaxed) & hook as u8 == 0 {
            return Ok(result);
        }
        self.check_first(hook, result)
    }

    #[cold]
    fn check_first<'py>(
        &self,
        hook: Hook,
        result: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = result.py();
        let inspect = py.import("inspect")?;
        if !inspect
            .call_method1("isawaitable", (&result,))?
            .is_truthy()?
        {
            self.unchecked.fetch_and(!(hook as u8), Ordering::Relaxed);
            return Ok(result);
        }
        // Closed, so that dropping it warns of nothing "never awaited".
        if let Some(close) = result.getattr_opt(intern!(py, "close"))? {
            close.call0()?;
        }
        Err(PyTypeError::new_err(format!(
            "{} returned an awaitable ({}): a pool runs its hooks synchronously, \
             inside get() and put(), and cannot await it; make the hook synchronous \
             (see {ASYNCIO_DOCS})",
            hook.name(),
            args::describe(&result),
        )))
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
    /// `validate(item)` and what its result means (see the module's header).
    #[inline(never)]
    fn call_validate(&mut self, f: &Py<PyAny>, item: &Py<PyAny>) -> PyResult<bool> {
        let py = self.py;
        let verdict = match f.bind(py).call1((item,)) {
            Ok(verdict) => self.hooks.first_call(Hook::Validate, verdict)?,
            Err(err) if err.is_instance_of::<PyException>(py) => {
                self.validator_raised(item, &err);
                return Ok(false);
            }
            // KeyboardInterrupt, SystemExit: not a verdict on the object.
            Err(err) => return Err(err),
        };
        if verdict.is(PyBool::new(py, true)) {
            Ok(true)
        } else if verdict.is(PyBool::new(py, false)) {
            Ok(false)
        } else {
            Err(PyTypeError::new_err(format!(
                "validate must return True or False, got {} (the object was destroyed)",
                args::describe(&verdict)
            )))
        }
    }

    #[cold]
    fn validator_raised(&self, item: &Py<PyAny>, err: &PyErr) {
        logging::log(
            self.py,
            Level::Warning,
            &format!(
                "{}: validate({}) raised; the object was destroyed (counted as invalid) \
                 and the next one tried",
                self.hooks.pool,
                logging::safe_repr(item.bind(self.py)),
            ),
            Some(err),
        );
    }

    /// Whether automatic reset is known to do nothing for `item`: its class
    /// is the one seen before, without a `reset` (`no_reset`, null until
    /// then, so never equal to a class).
    #[inline(always)]
    fn knows_no_reset(&self, item: &Py<PyAny>) -> bool {
        // A pointer comparison: no reference counting on the hot path.
        item.bind(self.py).get_type_ptr() == self.hooks.no_reset.load(Ordering::Relaxed)
    }

    /// [`Hooks::reset`] beyond its inlined common case.
    #[inline(never)]
    fn reset_slowly(&mut self, item: &Py<PyAny>) -> PyResult<()> {
        let result = match &self.hooks.reset {
            Reset::Off => return Ok(()),
            Reset::With(f) => f.bind(self.py).call1((item,))?,
            Reset::Auto => {
                if !self.has_reset_method(item)? {
                    return Ok(());
                }
                item.bind(self.py).call_method0(intern!(self.py, "reset"))?
            }
        };
        self.hooks.first_call(Hook::Reset, result).map(drop)
    }

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
        let (seen, seen_has) = self.hooks.reset_lookup.get_or_init(|| (ty.unbind(), has));
        if !*seen_has {
            // Whichever thread initialised the lookup, its class; stored
            // again by each thread that gets here, the same pointer.
            let seen = seen.as_ptr().cast::<pyo3::ffi::PyTypeObject>();
            self.hooks.no_reset.store(seen, Ordering::Relaxed);
        }
        Ok(has)
    }
}

impl Hooks<Py<PyAny>> for PyHooks<'_, '_> {
    type Error = PyErr;

    fn create(&mut self) -> PyResult<Py<PyAny>> {
        let factory = self.hooks.factory.bind(self.py);
        let item = match self.size {
            None => factory.call0()?,
            Some(size) => factory.call1((size,))?,
        };
        Ok(self.hooks.first_call(Hook::Factory, item)?.unbind())
    }

    /// Inlined for its common case, nothing to do: automatic reset of the
    /// class seen before, which has no `reset` (or `reset=False`). That
    /// case is a type comparison in the caller; an out-of-line call cost
    /// every put about 30 instructions (callgrind).
    #[inline(always)]
    fn reset(&mut self, item: &Py<PyAny>) -> PyResult<()> {
        if self.knows_no_reset(item) {
            return Ok(());
        }
        match &self.hooks.reset {
            Reset::Off => Ok(()),
            _ => self.reset_slowly(item),
        }
    }

    #[inline]
    fn validate(&mut self, item: &Py<PyAny>) -> PyResult<bool> {
        // Without a validator, a branch: the call and its checks are
        // outlined, so every get and batch object pays nothing more.
        let hooks = self.hooks;
        match &hooks.validate {
            None => Ok(true),
            Some(f) => self.call_validate(f, item),
        }
    }

    fn destroy(&mut self, item: Py<PyAny>) {
        if let Some(f) = &self.hooks.destroy {
            let result = f
                .bind(self.py)
                .call1((&item,))
                .and_then(|r| self.hooks.first_call(Hook::Destroy, r));
            if let Err(err) = result {
                let message = format!(
                    "{}: destroy({}) raised; the pool no longer holds the object",
                    self.hooks.pool,
                    logging::safe_repr(item.bind(self.py)),
                );
                log_swallowed(self.py, &message, &err);
            }
        }
    }

    /// A factory error while refilling to `min_size`: no caller to raise
    /// it to, so it is logged (`ERROR`), as a failing `destroy` is.
    fn report(&mut self, err: PyErr) {
        let message = format!(
            "{}: factory() raised while replacing destroyed objects (min_size); \
             the pool holds fewer until a later destroy or get makes them",
            self.hooks.pool
        );
        log_swallowed(self.py, &message, &err);
    }

    fn identity(&self, item: &Py<PyAny>) -> usize {
        item.as_ptr() as usize
    }

    fn duplicate(&mut self, item: &Py<PyAny>) -> Py<PyAny> {
        item.clone_ref(self.py)
    }

    /// A `KeyboardInterrupt` that `destroy` or a refill's factory raised
    /// while the get rejected an object was raised again as Ctrl-C is
    /// (`interrupt_again`): on the main thread it is raised here, ending
    /// the get before it hands out an object the interrupt would strand (a
    /// real Ctrl-C pending meanwhile too). On other threads, nothing.
    fn check_interrupts(&mut self) -> PyResult<()> {
        self.py.check_signals()
    }

    /// Waits detached from the interpreter, in slices, so that other threads
    /// run meanwhile and Ctrl-C (signal handlers) still get through.
    fn park(&mut self, waiter: &dyn Park, deadline: Option<Instant>) -> PyResult<bool> {
        let (py, slice) = (self.py, Duration::from_millis(50));
        let park = |until| py.detach(|| waiter.park(Some(until)));
        park_in_slices(deadline, slice, park, || py.check_signals())
    }
}

/// Logs `err`, which a hook raised where no caller can take it (`destroy`,
/// a refill's factory): at `ERROR`; a `KeyboardInterrupt` at `WARNING`,
/// then raised again ([`interrupt_again`]).
#[cold]
fn log_swallowed(py: Python<'_>, message: &str, err: &PyErr) {
    if !err.is_instance_of::<PyKeyboardInterrupt>(py) {
        logging::log(py, Level::Error, message, Some(err));
        return;
    }
    let message =
        format!("{message}: KeyboardInterrupt, raised again in the main thread (as Ctrl-C is)");
    logging::log(py, Level::Warning, &message, Some(err));
    // After the log: raised again before, it would interrupt the logging
    // (Python code) instead of the caller.
    interrupt_again();
}

/// Raises a `KeyboardInterrupt` that a hook raised again, the way Ctrl-C
/// does (most likely what raised it, while the hook ran): the SIGINT
/// handler runs in the main thread at its next check
/// (`PyErr_SetInterruptEx`; by default it raises `KeyboardInterrupt`; if
/// SIGINT is ignored, or left to the system, nothing happens, as for
/// Ctrl-C).
/// SIGINT's number, 2 on every platform CPython runs on (`libc` is a
/// dependency on Unix only).
const SIGINT: std::ffi::c_int = 2;

pub fn interrupt_again() {
    // SAFETY: no preconditions: async-signal-safe, callable from any thread
    // (it only marks the signal pending for the main thread). It fails only
    // for a signal number out of range, which SIGINT is not.
    unsafe { pyo3::ffi::PyErr_SetInterruptEx(SIGINT) };
}
