//! What the four pool classes share, written once: the [`PoolClass`] trait
//! each implements, and [`pool_methods!`], which gives each the same
//! `close()`, `outstanding()`, `name`, `track`, `closed`, `len()`, context
//! manager, `repr()` frame and refusals to pickle or copy, so they cannot
//! drift apart.

use std::ops::Deref;
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::naming::Naming;
use super::tracking::Tracking;

/// What [`pool_methods!`] cannot tell from a pool class's `core` field.
pub trait PoolClass {
    /// Closes the core (the shared `close()` then warns about what is out).
    fn close_core(&self, py: Python<'_>);
    /// What `repr()` shows after the class, the name and `closed`.
    fn repr_fields(&self, py: Python<'_>) -> PyResult<String>;
}

/// A pool's core with its name and tracker. Every pool class keeps one in
/// its `core` field; a block or buffer pool shares it (in an `Arc`) with
/// the blocks or buffers it hands out, so that they can name their pool
/// and its acquisition sites.
pub struct Shared<C> {
    pub core: C,
    pub naming: Naming,
    pub tracking: Tracking,
}

impl<C> Shared<C> {
    /// `core` with the pool's [`labels`].
    pub fn new(core: C, (naming, tracking): (Naming, Tracking)) -> Self {
        Shared {
            core,
            naming,
            tracking,
        }
    }
}

impl<C> Deref for Shared<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.core
    }
}

/// What a block or buffer keeps of the pool that handed it out: the pool's
/// shared core, and the item's key in the pool's tracker (0 when not
/// tracking).
pub struct PoolLink<C> {
    shared: Arc<Shared<C>>,
    ticket: u64,
}

impl<C> PoolLink<C> {
    /// The link of an item `pool` just handed out; a tracking pool records
    /// the caller's stack as its acquisition site.
    #[inline]
    pub fn acquired(py: Python<'_>, pool: &Arc<Shared<C>>) -> Self {
        let ticket = pool.tracking.ticket();
        pool.tracking.acquired(py, ticket);
        PoolLink {
            shared: Arc::clone(pool),
            ticket,
        }
    }

    /// The item is back (or gone for good): its site is forgotten.
    #[inline]
    pub fn returned(&self) {
        self.shared.tracking.returned(self.ticket);
    }

    /// `outcome` of letting the item go back: once it is back, its site is
    /// forgotten.
    #[inline]
    pub fn settle<E>(&self, outcome: Result<(), E>) -> Result<(), E> {
        if outcome.is_ok() {
            self.returned();
        }
        outcome
    }

    /// Refuses (`ValueError`) a `put()` to `pool` of a `what` from another.
    pub fn check_put_to(&self, pool: &Arc<Shared<C>>, what: &str, kind: &str) -> PyResult<()> {
        if Arc::ptr_eq(&self.shared, pool) {
            return Ok(());
        }
        let message = format!("put() of a {what} from another {kind}");
        Err(PyValueError::new_err(message))
    }

    /// Warns that the item was collected without release (see
    /// [`Tracking::collected_unreleased`]) and forgets its site.
    pub fn collected_unreleased(&self, py: Python<'_>, what: &str, kind: &str, advice: &str) {
        let (naming, tracking) = (&self.shared.naming, &self.shared.tracking);
        tracking.collected_unreleased(py, naming, self.ticket, what, kind, advice);
    }
}

impl<C> Deref for PoolLink<C> {
    type Target = Shared<C>;

    fn deref(&self) -> &Shared<C> {
        &self.shared
    }
}

/// `name=` and `track=` as given to a pool's constructor, checked before
/// the other arguments.
pub fn labels(
    name: Option<&Bound<'_, PyAny>>,
    track: Option<&Bound<'_, PyAny>>,
) -> PyResult<(Naming, Tracking)> {
    Ok((Naming::new(name)?, Tracking::new(track)?))
}

/// `pool_methods!(Class, "item", idle, /// docs of close())`: the methods
/// every pool class shares, over its `core` field (a [`Shared`] core) and
/// its [`PoolClass`] implementation. `item` names what the pool hands out,
/// for docs and messages; `idle` is the core's method that counts them.
macro_rules! pool_methods {
    ($class:ident, $item:literal, $idle:ident, $(#[$close_doc:meta])*) => {
        $crate::python::class_macros::exit_method!($class, close, /// Closes the pool.
        );

        #[pyo3::pymethods]
        impl $class {
            $(#[$close_doc])*
            fn close(&self, py: Python<'_>) -> PyResult<()> {
                $crate::python::pool_class::PoolClass::close_core(self, py);
                let (kind, what) = (stringify!($class), concat!($item, "(s)"));
                let core = &self.core;
                core.tracking.warn_if_outstanding(py, &core.naming, kind, what)
            }

            #[doc = concat!("Where each ", $item, " still out was acquired (formatted stacks,")]
            /// oldest first). Needs ``track=True``; raises ``RuntimeError`` otherwise.
            fn outstanding(&self) -> PyResult<Vec<String>> {
                self.core.tracking.outstanding_sites()
            }

            /// The pool's name (``name=``), or ``None``.
            #[getter]
            fn name(&self) -> Option<&str> {
                self.core.naming.name()
            }

            /// Whether acquisition sites are recorded (``track=True``).
            #[getter]
            fn track(&self) -> bool {
                self.core.tracking.is_tracking()
            }

            /// Whether ``close()`` was called.
            #[getter]
            fn closed(&self) -> bool {
                self.core.is_closed()
            }

            #[doc = concat!("The number of idle ", $item, "s.")]
            fn __len__(&self) -> usize {
                self.core.$idle()
            }

            fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
                slf
            }

            fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
                use $crate::python::pool_class::PoolClass as _;
                let pool = slf.get();
                Ok(format!(
                    "<{}{}{} {}>",
                    slf.get_type().qualname()?,
                    pool.core.naming.repr_part(),
                    if pool.core.is_closed() { " closed" } else { "" },
                    pool.repr_fields(slf.py())?,
                ))
            }

            fn __reduce__(&self) -> PyResult<()> {
                Err(pyo3::exceptions::PyTypeError::new_err(concat!(
                    "cannot pickle '", stringify!($class), "' object: a pool holds live ",
                    $item, "s; create a new pool in the other process",
                )))
            }

            fn __copy__(&self) -> PyResult<()> {
                Err(pyo3::exceptions::PyTypeError::new_err(concat!(
                    "cannot copy '", stringify!($class), "' object: a pool holds live ",
                    $item, "s; create a new pool",
                )))
            }

            fn __deepcopy__(&self, _memo: &Bound<'_, PyAny>) -> PyResult<()> {
                self.__copy__()
            }
        }
    };
}

pub(crate) use pool_methods;
