//! The lease of a block handed out to a holder: export counting and a
//! release that happens once.
//!
//! `state` packs a count of live exports (buffer views) with a RELEASED bit.
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
//! - Acquire/release ordering on `state` makes everything a holder wrote
//!   through an export visible to the thread that wins the release.

use std::sync::atomic::{AtomicUsize, Ordering};

const RELEASED: usize = 1 << (usize::BITS - 1);

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
                (s & RELEASED == 0).then_some(s + 1)
            })
            .map(drop)
            .map_err(|_| LeaseError::Released)
    }

    /// Ends one export registered by `try_export`.
    #[inline]
    pub fn unexport(&self) {
        let before = self.state.fetch_sub(1, Ordering::Release);
        debug_assert!(before & !RELEASED > 0, "unexport without export");
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
            Err(s) if s & RELEASED != 0 => Err(LeaseError::Released),
            Err(s) => Err(LeaseError::Exported(s)),
        }
    }

    #[inline]
    pub fn is_released(&self) -> bool {
        self.state.load(Ordering::Acquire) & RELEASED != 0
    }

    /// Live exports right now.
    pub fn exports(&self) -> usize {
        self.state.load(Ordering::Relaxed) & !RELEASED
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
        l.unexport();
        l.unexport();
        assert_eq!(l.exports(), 0);
        assert_eq!(l.try_release(), Ok(()));
        assert!(l.is_released());
        assert_eq!(l.try_release(), Err(LeaseError::Released));
        assert_eq!(l.try_export(), Err(LeaseError::Released));
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
                                    l.unexport();
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
