//! `track=True`: where each object, block or buffer still out was acquired,
//! for `outstanding()` and the `ResourceWarning`s of `close()` and of
//! items collected without release.
//!
//! The record of sites is the core's (`crate::sites`, with its
//! invariants); this module captures the stacks and raises the warnings.
//! With tracking off nothing is recorded and the cost is one branch.

use std::ffi::CString;

use pyo3::exceptions::{PyResourceWarning, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use super::args;
use super::discard::not_out;
use super::errors::put_error;
use super::naming::Naming;
use crate::sites::{Site, Sites};
use crate::{NotOut, PutError};

static FORMAT_STACK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The acquisition sites of a pool's items, or nothing (`track=False`).
pub struct Tracking(Option<Sites>);

/// The key of a Python object in a pool's tracker: its address.
pub fn object_key(obj: &Py<PyAny>) -> u64 {
    obj.as_ptr() as u64
}

impl Tracking {
    /// `track=` as given to a pool's constructor.
    pub fn new(track: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let track = args::optional_bool(track, "track")?.unwrap_or(false);
        Ok(Tracking(track.then(Sites::new)))
    }

    #[inline(always)]
    pub fn is_tracking(&self) -> bool {
        self.0.is_some()
    }

    /// A fresh key for something without a stable address (a block, a
    /// buffer); 0 when not tracking.
    pub fn ticket(&self) -> u64 {
        self.0.as_ref().map_or(0, Sites::ticket)
    }

    /// Records the caller's stack as the acquisition site of `key`.
    #[inline(always)]
    pub fn acquired(&self, py: Python<'_>, key: u64) {
        if let Some(sites) = &self.0 {
            record(sites, py, key);
        }
    }

    /// `key` is back (or gone for good).
    #[inline(always)]
    pub fn returned(&self, key: u64) -> Option<Site> {
        self.0.as_ref().and_then(|sites| sites.forget(key))
    }

    /// `put` gives the Python object `obj` back to its pool, its site
    /// forgotten first and restored if refused ([`Sites::give_back`]); the
    /// error as Python's.
    #[inline(always)]
    pub fn put_object(
        &self,
        obj: &Bound<'_, PyAny>,
        put: impl FnOnce() -> Result<(), PutError<PyErr>>,
    ) -> PyResult<()> {
        let outcome = match &self.0 {
            None => put(),
            Some(sites) => sites.give_back(object_key(obj.as_unbound()), put, PutError::is_not_out),
        };
        outcome.map_err(|e| put_error(e, obj))
    }

    /// [`Tracking::put_object`] for a discard.
    #[inline(always)]
    pub fn discard_object(
        &self,
        obj: &Bound<'_, PyAny>,
        discard: impl FnOnce() -> Result<(), NotOut>,
    ) -> PyResult<()> {
        let outcome = match &self.0 {
            None => discard(),
            Some(sites) => sites.give_back(object_key(obj.as_unbound()), discard, |NotOut| true),
        };
        outcome.map_err(|NotOut| not_out(obj))
    }

    /// Forgets the record of an item (a block, a buffer) its holder never
    /// released, and warns (`ResourceWarning`) that it was collected, with
    /// where it was acquired. `what` names the item, `kind` the pool type,
    /// `advice` what went back and how to avoid it.
    pub fn collected_unreleased(
        &self,
        py: Python<'_>,
        naming: &Naming,
        ticket: u64,
        what: &str,
        kind: &str,
        advice: &str,
    ) {
        let site = self.returned(ticket).map(|(_, site)| site);
        let mut message = format!(
            "{what} from {} was garbage-collected without release(); {advice}",
            naming.describe(kind)
        );
        if let Some(site) = site {
            message.push_str("; acquired at:\n");
            message.push_str(site.trim_end());
        }
        super::errors::warn_unreleased(py, message);
    }

    /// `outstanding()`: every acquisition site still out, oldest first;
    /// `RuntimeError` without `track=True` (an empty list would read as
    /// "no leaks").
    pub fn outstanding_sites(&self) -> PyResult<Vec<String>> {
        let sites = self.0.as_ref().ok_or_else(|| {
            PyRuntimeError::new_err("outstanding() needs a pool created with track=True")
        })?;
        Ok(sites.sites())
    }

    /// After `close()`: a `ResourceWarning` naming where the objects still
    /// out were acquired (tracking pools only). Raises if warnings are
    /// errors, like any warning.
    pub fn warn_if_outstanding(
        &self,
        py: Python<'_>,
        naming: &Naming,
        kind: &str,
        what: &str,
    ) -> PyResult<()> {
        let sites = self.0.as_ref();
        match sites.and_then(|s| s.closing_message(&naming.describe(kind), what)) {
            None => Ok(()),
            Some(message) => {
                let message = CString::new(message.replace('\0', "?")).expect("NULs replaced");
                let category = py.get_type::<PyResourceWarning>();
                PyErr::warn(py, category.as_any(), &message, 1)
            }
        }
    }
}

/// Records the caller's stack as the acquisition site of `key`.
#[cold]
#[inline(never)]
fn record(sites: &Sites, py: Python<'_>, key: u64) {
    // A diagnostic must not fail the `get` it describes.
    let site = capture_stack(py).unwrap_or_else(|e| format!("<stack unavailable: {e}>\n"));
    sites.record(key, site);
}

fn capture_stack(py: Python<'_>) -> PyResult<String> {
    let format_stack = FORMAT_STACK.get_or_try_init(py, || {
        py.import("traceback")?
            .getattr("format_stack")
            .map(Bound::unbind)
    })?;
    let lines: Vec<String> = format_stack.call0(py)?.extract(py)?;
    Ok(lines.concat())
}
