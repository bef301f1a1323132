//! `track=True`: where each object, block or buffer still out was acquired,
//! for `outstanding()` and the `ResourceWarning`s of `close()` and of
//! items collected without release.
//!
//! Invariants:
//! - With tracking on, `sites` holds exactly one entry per object or block
//!   handed out and not yet back (keyed by the object's address, or by a
//!   block's or buffer's ticket), recorded after the core handed it out
//!   and forgotten before the core takes it back, so an entry never
//!   outlives the holding it describes.
//! - With tracking off, nothing is recorded and the cost is one branch.

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::exceptions::{PyResourceWarning, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use super::args;
use super::naming::Naming;

/// How many acquisition sites a warning quotes.
const SITES_IN_WARNINGS: usize = 3;

static FORMAT_STACK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The acquisition sites of a pool's items, or nothing (`track=False`).
pub struct Tracking(Option<Tracker>);

/// The key of a Python object in a pool's tracker: its address.
pub fn object_key(obj: &Py<PyAny>) -> u64 {
    obj.as_ptr() as u64
}

struct Tracker {
    /// Numbers acquisitions, so sites list oldest first, and gives blocks
    /// and buffers their keys.
    next_ticket: AtomicU64,
    /// Key -> (acquisition number, formatted stack).
    sites: Mutex<HashMap<u64, (u64, String)>>,
}

impl Tracking {
    /// `track=` as given to a pool's constructor.
    pub fn new(track: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let track = args::optional_bool(track, "track")?.unwrap_or(false);
        Ok(Tracking(track.then(|| Tracker {
            next_ticket: AtomicU64::new(1),
            sites: Mutex::new(HashMap::new()),
        })))
    }

    pub fn is_tracking(&self) -> bool {
        self.0.is_some()
    }

    /// A fresh key for something without a stable address (a block, a
    /// buffer); 0 when not tracking.
    pub fn ticket(&self) -> u64 {
        self.0
            .as_ref()
            .map_or(0, |t| t.next_ticket.fetch_add(1, Ordering::Relaxed))
    }

    /// Records the caller's stack as the acquisition site of `key`.
    #[inline(always)]
    pub fn acquired(&self, py: Python<'_>, key: u64) {
        if let Some(tracker) = &self.0 {
            tracker.record(py, key);
        }
    }

    /// `key` is back (or gone for good). Returns its record, for
    /// [`Tracking::restore`] if the return is refused after all.
    #[inline(always)]
    pub fn returned(&self, key: u64) -> Option<(u64, String)> {
        match &self.0 {
            None => None,
            Some(tracker) => tracker.forget(key),
        }
    }

    /// Puts back a record that [`Tracking::returned`] removed.
    pub fn restore(&self, key: u64, record: Option<(u64, String)>) {
        if let (Some(tracker), Some(record)) = (&self.0, record) {
            tracker.lock().insert(key, record);
        }
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
        let tracker = self.0.as_ref().ok_or_else(|| {
            PyRuntimeError::new_err("outstanding() needs a pool created with track=True")
        })?;
        Ok(tracker.sites())
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
        match self.closing_message(&naming.describe(kind), what) {
            None => Ok(()),
            Some(message) => {
                let message = CString::new(message.replace('\0', "?")).expect("NULs replaced");
                let category = py.get_type::<PyResourceWarning>();
                PyErr::warn(py, category.as_any(), &message, 1)
            }
        }
    }

    /// A warning's text for closing while objects are out, or `None`.
    fn closing_message(&self, pool: &str, what: &str) -> Option<String> {
        let sites = self.0.as_ref().map_or_else(Vec::new, Tracker::sites);
        if sites.is_empty() {
            return None;
        }
        let mut message = format!(
            "{pool} closed with {} {what} still out; acquired at:",
            sites.len()
        );
        for site in sites.iter().take(SITES_IN_WARNINGS) {
            message.push('\n');
            message.push_str(site.trim_end());
        }
        if sites.len() > SITES_IN_WARNINGS {
            message.push_str(&format!(
                "\n... and {} more (see outstanding())",
                sites.len() - SITES_IN_WARNINGS
            ));
        }
        Some(message)
    }
}

impl Tracker {
    #[cold]
    #[inline(never)]
    fn record(&self, py: Python<'_>, key: u64) {
        // A diagnostic must not fail the `get` it describes.
        let site = capture_stack(py).unwrap_or_else(|e| format!("<stack unavailable: {e}>\n"));
        let order = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(key, (order, site));
    }

    #[cold]
    #[inline(never)]
    fn forget(&self, key: u64) -> Option<(u64, String)> {
        self.lock().remove(&key)
    }

    /// Every acquisition site still out, oldest first.
    fn sites(&self) -> Vec<String> {
        let sites = self.lock();
        let mut entries: Vec<_> = sites.values().collect();
        entries.sort_by_key(|(order, _)| *order);
        entries.into_iter().map(|(_, site)| site.clone()).collect()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, (u64, String)>> {
        // Nothing panics while the lock is held; keep going if it did.
        self.sites.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The Python stack of the calling thread, formatted as in a traceback.
fn capture_stack(py: Python<'_>) -> PyResult<String> {
    let format_stack = FORMAT_STACK.get_or_try_init(py, || {
        py.import("traceback")?
            .getattr("format_stack")
            .map(Bound::unbind)
    })?;
    let lines: Vec<String> = format_stack.call0(py)?.extract(py)?;
    Ok(lines.concat())
}
