//! Where each item still out was acquired: the record behind a pool's
//! `track=True` (`outstanding()` and the warnings of `close()` and of items
//! collected without release). The caller describes a site (the binding: a
//! formatted Python stack); this module keeps the sites in acquisition order.
//!
//! Invariants: one entry per key recorded and not yet forgotten (the
//! binding records after the core hands an item out and forgets before the
//! core takes it back, so an entry never outlives the holding it
//! describes); the numbers that order entries, and the tickets of items
//! without a stable address, come from one counter and never repeat. The
//! map sits behind one mutex, never held while the caller runs other code.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// How many acquisition sites a warning quotes.
const SITES_IN_WARNINGS: usize = 3;

/// A recorded site: (acquisition number, description).
pub(crate) type Site = (u64, String);

/// The acquisition sites of one pool's items.
pub(crate) struct Sites {
    /// Numbers acquisitions, so sites list oldest first, and gives blocks
    /// and buffers their keys.
    next_ticket: AtomicU64,
    /// Key -> site.
    sites: Mutex<HashMap<u64, Site>>,
}

impl Sites {
    pub fn new() -> Self {
        Sites {
            next_ticket: AtomicU64::new(1),
            sites: Mutex::new(HashMap::new()),
        }
    }

    /// A fresh key for something without a stable address (never 0).
    pub fn ticket(&self) -> u64 {
        self.next_ticket.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Site>> {
        // Nothing panics while the lock is held; keep going if it did.
        self.sites.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `site` is where `key` was acquired.
    pub fn record(&self, key: u64, site: String) {
        let order = self.ticket();
        self.lock().insert(key, (order, site));
    }

    /// `key` is back (or gone for good): its site, for [`Sites::restore`]
    /// if the return is refused after all.
    #[cold]
    #[inline(never)]
    pub fn forget(&self, key: u64) -> Option<Site> {
        self.lock().remove(&key)
    }

    /// Puts back a site [`Sites::forget`] took, when the return was refused.
    pub fn restore(&self, key: u64, site: Site) {
        self.lock().insert(key, site);
    }

    /// Gives the item `key` back to its pool (`give_back`: a put or a
    /// discard) with its site forgotten first, since once back another
    /// thread may get it and record its own site under the same key. If the
    /// pool refuses the item as not out (`refused`), nothing changed: the
    /// site is put back. Out of line: only a tracking pool gets here, and
    /// the code of every put stays as small as without tracking.
    #[inline(never)]
    pub fn give_back<E>(
        &self,
        key: u64,
        give_back: impl FnOnce() -> Result<(), E>,
        refused: impl FnOnce(&E) -> bool,
    ) -> Result<(), E> {
        let site = self.forget(key);
        let outcome = give_back();
        if let (Some(site), Err(e)) = (site, &outcome) {
            if refused(e) {
                self.restore(key, site);
            }
        }
        outcome
    }

    /// The sites of the items out, oldest first.
    pub fn sites(&self) -> Vec<String> {
        let sites = self.lock();
        let mut entries: Vec<_> = sites.values().collect();
        entries.sort_by_key(|(order, _)| *order);
        entries.into_iter().map(|(_, site)| site.clone()).collect()
    }

    /// The warning for `pool` (described) closed while items (`what`) are
    /// out, quoting the oldest sites; `None` when nothing is out.
    pub fn closing_message(&self, pool: &str, what: &str) -> Option<String> {
        let sites = self.sites();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_sites_out_oldest_first_and_restores_a_refused_return() {
        let sites = Sites::new();
        assert_eq!(sites.closing_message("pool", "item(s)"), None);
        sites.record(7, "b\n".into());
        sites.record(3, "a\n".into());
        let taken = sites.forget(7).unwrap();
        assert_eq!(sites.forget(7), None);
        assert_eq!(sites.sites(), ["a\n"]);
        sites.restore(7, taken);
        assert_eq!(sites.sites(), ["b\n", "a\n"]);
        assert_ne!(sites.ticket(), 0);
    }

    #[test]
    fn a_give_back_forgets_the_site_unless_refused_as_not_out() {
        let sites = Sites::new();
        sites.record(1, "a\n".into());
        sites.record(2, "b\n".into());
        // Refused as not out: the site is back, with its place in the order.
        let refused = sites.give_back(1, || Err("not out"), |e| *e == "not out");
        assert_eq!(refused, Err("not out"));
        assert_eq!(sites.sites(), ["a\n", "b\n"]);
        // Failed otherwise (a reset that raised: the item is gone): forgotten.
        let failed = sites.give_back(1, || Err("reset"), |e| *e == "not out");
        assert_eq!(failed, Err("reset"));
        assert_eq!(sites.sites(), ["b\n"]);
        // Back, while the pool hands it out again: the new site is kept.
        let again = || {
            sites.record(2, "c\n".into());
            Ok::<_, ()>(())
        };
        let back = sites.give_back(2, again, |_| true);
        assert_eq!(back, Ok(()));
        assert_eq!(sites.sites(), ["c\n"]);
    }

    #[test]
    fn the_closing_message_quotes_the_oldest_three() {
        let sites = Sites::new();
        for key in 0..5 {
            sites.record(key, format!("site {key}\n"));
        }
        assert_eq!(
            sites
                .closing_message("ObjectPool 'x'", "object(s)")
                .unwrap(),
            "ObjectPool 'x' closed with 5 object(s) still out; acquired at:\n\
             site 0\nsite 1\nsite 2\n... and 2 more (see outstanding())"
        );
    }
}
