//! `timeout=`: a bounded `ObjectPool`'s default wait (set at construction)
//! and a call's own, and the `PoolTimeout` message. The waiting itself is
//! the core's (`Pool::get` takes the resolved limit); this only decides
//! which limit a call means.
//!
//! - Omitted at construction: 30 s in a bounded pool (as `psycopg_pool` and
//!   SQLAlchemy), no limit in an unbounded one (it never waits); `None`: no
//!   limit, explicitly.
//! - Omitted in a call: the pool's; `None`: no limit for that call; a
//!   number: that many seconds. So `None` means "for ever" in both places,
//!   and "the pool's default" is spelt by leaving the argument out.

use std::convert::Infallible;
use std::time::Duration;

use pyo3::prelude::*;

use super::args;
use super::errors::PoolTimeout;
use super::naming::Naming;

/// Seconds a bounded pool waits by default.
pub const DEFAULT_SECONDS: f64 = 30.0;

/// A `timeout=` argument as given: left out, or an object (`None` or a
/// number) that [`Wait::resolve`] checks. Extracting it never fails and
/// costs nothing when the argument is left out (the hot path).
pub enum TimeoutArg {
    Omitted,
    Given(Py<PyAny>),
}

impl<'a, 'py> FromPyObject<'a, 'py> for TimeoutArg {
    type Error = Infallible;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> Result<Self, Self::Error> {
        Ok(TimeoutArg::Given(obj.to_owned().unbind()))
    }
}

impl TimeoutArg {
    /// The object given, if any.
    pub fn given(&self) -> Option<&Py<PyAny>> {
        match self {
            TimeoutArg::Omitted => None,
            TimeoutArg::Given(t) => Some(t),
        }
    }
}

/// A limit on a wait: the `Duration` the core takes (`None`: no limit) and
/// the seconds as given, for messages.
#[derive(Clone, Copy, Debug)]
pub struct Wait {
    pub limit: Option<Duration>,
    pub secs: Option<f64>,
}

impl Wait {
    /// The pool's default from its constructor's `timeout=`.
    pub fn pool_default(value: &TimeoutArg, py: Python<'_>, bounded: bool) -> PyResult<Self> {
        match value {
            TimeoutArg::Omitted if bounded => Ok(Wait {
                limit: Some(Duration::from_secs_f64(DEFAULT_SECONDS)),
                secs: Some(DEFAULT_SECONDS),
            }),
            TimeoutArg::Omitted => Ok(Wait {
                limit: None,
                secs: None,
            }),
            TimeoutArg::Given(t) => Self::from_object(t.bind(py)),
        }
    }

    fn from_object(value: &Bound<'_, PyAny>) -> PyResult<Self> {
        let (limit, secs) = args::seconds(Some(value), "timeout")?;
        Ok(Wait { limit, secs })
    }

    /// The limit of one call: its own `timeout=` (`given`), or the pool's
    /// (`self`) when it was left out.
    #[inline]
    pub fn resolve(self, given: Option<&Py<PyAny>>, py: Python<'_>) -> PyResult<Self> {
        match given {
            None => Ok(self),
            Some(t) => Self::from_object(t.bind(py)),
        }
    }

    /// The `timeout` property: seconds, or `None` for no limit.
    pub fn seconds(&self) -> Option<f64> {
        self.limit.map(|_| self.secs.unwrap_or(0.0))
    }
}

/// The `PoolTimeout` of a wait that ran out: names the pool (or says it has
/// no name) and tells how many objects were in use and how many other
/// callers still wait, so the message alone shows a pool too small or a
/// holder that never gives back.
pub fn timed_out(
    naming: &Naming,
    secs: Option<f64>,
    max_size: Option<usize>,
    in_use: u64,
    waiting: usize,
) -> PyErr {
    let pool = match naming.name() {
        Some(_) => naming.describe("ObjectPool"),
        None => "ObjectPool (no name=)".to_owned(),
    };
    PoolTimeout::new_err(format!(
        "{pool}: no object became available within {} s \
         (max_size={}, in use: {in_use}, other callers waiting: {waiting})",
        secs.unwrap_or(0.0),
        max_size.map_or_else(|| "None".into(), |m| m.to_string()),
    ))
}
