//! The lease of a block handed out to a holder: export counting and a
//! release that happens once.
//!
//! `state` packs a count of live exports (buffer views) with two bits:
//! RELEASED, and PENDING: the holder let go while views were alive, so the
//! last view to end performs the release.
//!
//! Invariants:
//! - Exports are only added while RELEASED is clear: `try_export` adds one
//!   with a compare-and-swap from a state without RELEASED.
//! - RELEASED is set only by a compare-and-swap from exactly 0: no export is
//!   alive, and no one released before. So exactly one caller ever wins the
//!   release, and after it no export exists or can begin.
//! - Therefore the winner of `try_release` has the block to itself: it may
//!   take the memory and give it to someone else. Every other access to the
//!   memory happens under a live export (between `try_export` and
//!   `unexport`), which the winner's CAS rules out.
//! - PENDING is set only while exports are alive and RELEASED is clear, and
//!   stops new exports. The `unexport` that brings a PENDING lease to zero
//!   exports turns it into RELEASED by compare-and-swap, so it is that
//!   thread, and only it, that wins the release.
//! - Acquire/release ordering on `state` makes everything a holder wrote
//!   through an export visible to the thread that wins the release.

use crate::sync::atomic::{AtomicUsize, Ordering};

const RELEASED: usize = 1 << (usize::BITS - 1);
const PENDING: usize = 1 << (usize::BITS - 2);
const FLAGS: usize = RELEASED | PENDING;

/// Why an export or a release was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseError {
    /// The block was released already.
    Released,
    /// The block still has this many live exports.
    Exported(usize),
}

#[derive(Debug, Default)]
pub struct Lease {
    state: AtomicUsize,
}

impl Lease {
    pub fn new() -> Self {
        Lease::default()
    }

    /// Registers one export. Fails once the block is released.
    #[inline]
    pub fn try_export(&self) -> Result<(), LeaseError> {
        self.state
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |s| {
                // The count cannot realistically reach the RELEASED bit: each
                // export is a live object in memory.
                (s & FLAGS == 0).then_some(s + 1)
            })
            .map(drop)
            .map_err(|_| LeaseError::Released)
    }

    /// Ends one export registered by `try_export`. Returns `true` when this
    /// was the last export of a lease whose release was deferred: the caller
    /// has won the release and now owns the block exclusively.
    #[inline]
    #[must_use]
    pub fn unexport(&self) -> bool {
        let before = self.state.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before & !FLAGS > 0, "unexport without export");
        before == PENDING + 1
            && self
                .state
                .compare_exchange(PENDING, RELEASED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Releases now if no export is alive (`Ok(true)`: the caller owns the
    /// block), or defers the release to the last export (`Ok(false)`).
    pub fn release_or_defer(&self) -> Result<bool, LeaseError> {
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |s| match s {
                _ if s & FLAGS != 0 => None,
                0 => Some(RELEASED),
                n => Some(n | PENDING),
            })
            .map(|before| before == 0)
            .map_err(|_| LeaseError::Released)
    }

    /// Marks the block released. On `Ok` the caller owns the block's memory
    /// exclusively (see the module invariants).
    #[inline]
    pub fn try_release(&self) -> Result<(), LeaseError> {
        match self
            .state
            .compare_exchange(0, RELEASED, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => Ok(()),
            Err(s) if s & FLAGS != 0 => Err(LeaseError::Released),
            Err(s) => Err(LeaseError::Exported(s)),
        }
    }

    /// Released, or let go with the release deferred to the last export.
    #[inline]
    pub fn is_released(&self) -> bool {
        self.state.load(Ordering::Acquire) & FLAGS != 0
    }

    /// Live exports right now.
    pub fn exports(&self) -> usize {
        self.state.load(Ordering::Relaxed) & !FLAGS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn release_is_refused_while_exported_and_happens_once() {
        let l = Lease::new();
        l.try_export().unwrap();
        l.try_export().unwrap();
        assert_eq!(l.try_release(), Err(LeaseError::Exported(2)));
        assert!(!l.unexport());
        assert!(!l.unexport());
        assert_eq!(l.exports(), 0);
        assert_eq!(l.try_release(), Ok(()));
        assert!(l.is_released());
        assert_eq!(l.try_release(), Err(LeaseError::Released));
        assert_eq!(l.try_export(), Err(LeaseError::Released));
    }

    #[test]
    fn deferred_release_is_won_by_the_last_export() {
        let l = Lease::new();
        l.try_export().unwrap();
        l.try_export().unwrap();
        assert_eq!(l.release_or_defer(), Ok(false));
        assert!(l.is_released());
        assert_eq!(l.try_export(), Err(LeaseError::Released));
        assert_eq!(l.try_release(), Err(LeaseError::Released));
        assert_eq!(l.release_or_defer(), Err(LeaseError::Released));
        assert!(!l.unexport());
        assert!(l.unexport(), "the last export performs the release");
        assert_eq!(l.try_release(), Err(LeaseError::Released));
        let free = Lease::new();
        assert_eq!(free.release_or_defer(), Ok(true));
    }

    /// Exporters and releasers race: exactly one release wins, and it never
    /// wins while an export is alive.
    #[test]
    fn racing_exports_and_releases() {
        for _ in 0..200 {
            let l = Arc::new(Lease::new());
            let live = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let (l, live) = (Arc::clone(&l), Arc::clone(&live));
                    std::thread::spawn(move || {
                        let mut wins = 0;
                        for _ in 0..50 {
                            if t % 2 == 0 {
                                if l.try_export().is_ok() {
                                    live.fetch_add(1, Ordering::SeqCst);
                                    std::hint::spin_loop();
                                    live.fetch_sub(1, Ordering::SeqCst);
                                    assert!(!l.unexport());
                                }
                            } else if l.try_release().is_ok() {
                                assert_eq!(live.load(Ordering::SeqCst), 0);
                                wins += 1;
                            }
                        }
                        wins
                    })
                })
                .collect();
            let wins: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
            // If the exporters kept the releasers out, the block is free now.
            let late = usize::from(l.try_release().is_ok());
            assert_eq!(wins + late, 1);
        }
    }
}
