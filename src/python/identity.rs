//! What every pool knows about itself beyond its core: an optional `name`
//! (for `repr()`, warnings and metrics) and, when `track=True`, where each
//! object or block still out was acquired.
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
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::exceptions::{PyResourceWarning, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;

use super::args;

/// How many acquisition sites a warning quotes.
const SITES_IN_WARNINGS: usize = 3;

static FORMAT_STACK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

pub struct Identity {
    name: Option<String>,
    /// `repr(name)`, as Python quotes it.
    name_repr: String,
    tracker: Option<Tracker>,
}

/// A pool's core with its identity: what a block pool or buffer pool
/// shares (in an `Arc`) with the blocks or buffers it hands out, so that
/// they can name their pool and its acquisition sites.
pub struct Identified<C> {
    pub core: C,
    pub identity: Identity,
}

impl<C> Deref for Identified<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.core
    }
}

struct Tracker {
    /// Numbers acquisitions, so sites list oldest first, and gives blocks
    /// and buffers their keys.
    next_ticket: AtomicU64,
    /// Key -> (acquisition number, formatted stack).
    sites: Mutex<HashMap<u64, (u64, String)>>,
}

impl Identity {
    /// `name=` and `track=` as given to a pool's constructor.
    pub fn new(
        name: Option<&Bound<'_, PyAny>>,
        track: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let (name, name_repr) = match name.filter(|n| !n.is_none()) {
            None => (None, String::new()),
            Some(n) => match n.cast::<PyString>() {
                Ok(s) => (Some(s.to_str()?.to_owned()), args::repr(n)),
                Err(_) => return Err(args::type_error("name", "a str or None", n)),
            },
        };
        let track = args::optional_bool(track, "track")?.unwrap_or(false);
        Ok(Identity {
            name,
            name_repr,
            tracker: track.then(|| Tracker {
                next_ticket: AtomicU64::new(1),
                sites: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// ` name='...'` for a `repr()`, or nothing.
    pub fn repr_part(&self) -> String {
        match &self.name {
            Some(_) => format!(" name={}", self.name_repr),
            None => String::new(),
        }
    }

    /// `ObjectPool 'name'` (or just the kind) for messages.
    pub fn describe(&self, kind: &str) -> String {
        match &self.name {
            Some(_) => format!("{kind} {}", self.name_repr),
            None => kind.to_owned(),
        }
    }

    pub fn is_tracking(&self) -> bool {
        self.tracker.is_some()
    }

    /// A fresh key for something without a stable address (a block, a
    /// buffer); 0 when not tracking.
    pub fn ticket(&self) -> u64 {
        self.tracker
            .as_ref()
            .map_or(0, |t| t.next_ticket.fetch_add(1, Ordering::Relaxed))
    }

    /// Records the caller's stack as the acquisition site of `key`.
    #[inline(always)]
    pub fn acquired(&self, py: Python<'_>, key: u64) {
        if let Some(tracker) = &self.tracker {
            tracker.record(py, key);
        }
    }

    /// `key` is back (or gone for good). Returns its record, for
    /// [`Identity::restore`] if the return is refused after all.
    #[inline(always)]
    pub fn returned(&self, key: u64) -> Option<(u64, String)> {
        match &self.tracker {
            None => None,
            Some(tracker) => tracker.forget(key),
        }
    }

    /// Puts back a record that [`Identity::returned`] removed.
    pub fn restore(&self, key: u64, record: Option<(u64, String)>) {
        if let (Some(tracker), Some(record)) = (&self.tracker, record) {
            tracker.lock().insert(key, record);
        }
    }

    /// The acquisition site of `key`, if tracked.
    pub fn site(&self, key: u64) -> Option<String> {
        let tracker = self.tracker.as_ref()?;
        let sites = tracker.lock();
        sites.get(&key).map(|(_, site)| site.clone())
    }

    /// Forgets the record of an item (a block, a buffer) its holder never
    /// released, and warns (`ResourceWarning`) that it was collected, with
    /// where it was acquired. `what` names the item, `kind` the pool type,
    /// `advice` what went back and how to avoid it.
    pub fn collected_unreleased(
        &self,
        py: Python<'_>,
        ticket: u64,
        what: &str,
        kind: &str,
        advice: &str,
    ) {
        let site = self.site(ticket);
        self.returned(ticket);
        let mut message = format!(
            "{what} from {} was garbage-collected without release(); {advice}",
            self.describe(kind)
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
        if self.tracker.is_none() {
            return Err(PyRuntimeError::new_err(
                "outstanding() needs a pool created with track=True",
            ));
        }
        Ok(self.outstanding())
    }

    /// Every acquisition site still out, oldest first.
    pub fn outstanding(&self) -> Vec<String> {
        let Some(tracker) = &self.tracker else {
            return Vec::new();
        };
        let sites = tracker.lock();
        let mut entries: Vec<_> = sites.values().collect();
        entries.sort_by_key(|(order, _)| *order);
        entries.into_iter().map(|(_, site)| site.clone()).collect()
    }

    /// After `close()`: a `ResourceWarning` naming where the objects still
    /// out were acquired (tracking pools only). Raises if warnings are
    /// errors, like any warning.
    pub fn warn_if_outstanding(&self, py: Python<'_>, kind: &str, what: &str) -> PyResult<()> {
        match self.closing_message(kind, what) {
            None => Ok(()),
            Some(message) => {
                let message = CString::new(message.replace('\0', "?")).expect("NULs replaced");
                let category = py.get_type::<PyResourceWarning>();
                PyErr::warn(py, category.as_any(), &message, 1)
            }
        }
    }

    /// A warning's text for closing while objects are out, or `None`.
    fn closing_message(&self, kind: &str, what: &str) -> Option<String> {
        let sites = self.outstanding();
        if sites.is_empty() {
            return None;
        }
        let mut message = format!(
            "{} closed with {} {what} still out; acquired at:",
            self.describe(kind),
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
