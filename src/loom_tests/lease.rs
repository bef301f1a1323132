//! The export/release protocol of a leased block (`lease.rs`, and
//! `Leased` in `blocks.rs`).
//!
//! The block's bytes are modelled by loom cells `mem`, one per view so that
//! views do not race each other: view `i` writes `mem[i]` while its export
//! is alive, and whoever wins the release writes them all (it now owns the
//! memory and may hand it to someone else). loom reports any two of
//! those writes that are not ordered by happens-before, so these models
//! prove, for every interleaving within the bound:
//! - no release while exported: a release never overlaps a live export, and
//!   everything written through an export is visible to the release winner
//!   (the orderings on `state` are strong enough);
//! - exactly one party wins the release (`try_release`, `release_or_defer`
//!   or the last `unexport`), and it alone takes the block out of `Leased`
//!   (its cell is a loom cell too);
//! - no export starts after a release, and the final state is released with
//!   no export.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

use super::check;
use super::Bound::Exhaustive;
use crate::blocks::Leased;
use crate::lease::{Lease, LeaseError};
use crate::memory::OwnedBlock;

/// A lease and the bytes it guards.
struct Guarded {
    lease: Lease,
    mem: Mem,
}

/// A leased block and a model of its bytes.
struct Block {
    leased: Leased,
    mem: Mem,
}

/// The bytes of a block: a part for each of two views.
type Mem = [UnsafeCell<u32>; 2];

fn mem() -> Mem {
    [UnsafeCell::new(0), UnsafeCell::new(0)]
}

/// View `i` writes its part of the bytes.
fn write(mem: &Mem, i: usize) {
    // SAFETY: loom's cell checks the claim under test: no other access
    // overlaps this one.
    mem[i].with_mut(|p| unsafe { *p += 1 });
}

/// The owner of the memory after a release writes all of it.
fn reuse(mem: &Mem) {
    for part in mem {
        // SAFETY: as in `write`: loom reports an overlapping access.
        part.with_mut(|p| unsafe { *p = 0 });
    }
}

impl Block {
    fn new() -> Arc<Self> {
        let block = OwnedBlock::zeroed(64, 64).unwrap();
        Arc::new(Block {
            leased: Leased::new(block, 64),
            mem: mem(),
        })
    }

    /// View 0: export, write, unexport. `Some` if this view won a deferred
    /// release.
    fn view(&self) -> Option<OwnedBlock> {
        self.leased.export().ok()?;
        write(&self.mem, 0);
        self.leased.unexport()
    }
}

/// Two exporters race `try_release`: the release never wins while an
/// export is alive, and of it and a late release exactly one wins.
#[test]
fn exports_racing_try_release() {
    check(Exhaustive, || {
        let g = Arc::new(Guarded {
            lease: Lease::new(),
            mem: mem(),
        });
        let views: Vec<_> = (0..2)
            .map(|i| {
                let g = Arc::clone(&g);
                thread::spawn(move || {
                    if g.lease.try_export().is_ok() {
                        write(&g.mem, i);
                        assert!(!g.lease.unexport(), "no release was deferred");
                    }
                })
            })
            .collect();
        let won = match g.lease.try_release() {
            Ok(()) => true,
            Err(LeaseError::Exported(n)) => {
                assert!(n > 0);
                false
            }
            Err(LeaseError::Released) => panic!("nobody else releases"),
        };
        if won {
            reuse(&g.mem);
            assert_eq!(g.lease.try_export(), Err(LeaseError::Released));
        }
        for v in views {
            v.join().unwrap();
        }
        let late = !won && g.lease.try_release().is_ok();
        assert!(won ^ late, "exactly one release wins");
        assert!(g.lease.is_released());
        assert_eq!(g.lease.exports(), 0);
        assert_eq!(g.lease.try_release(), Err(LeaseError::Released));
    });
}

/// Two live views end while the holder lets go (`release_or_defer`):
/// exactly one of the three gets the block, never while a view writes.
#[test]
fn last_view_wins_a_deferred_release() {
    check(Exhaustive, || {
        let b = Block::new();
        b.leased.export().unwrap();
        b.leased.export().unwrap();
        let views: Vec<_> = (0..2)
            .map(|i| {
                let b = Arc::clone(&b);
                thread::spawn(move || {
                    write(&b.mem, i);
                    let won = b.leased.unexport();
                    if won.is_some() {
                        reuse(&b.mem);
                    }
                    won
                })
            })
            .collect();
        let holder = b.leased.release_or_defer().unwrap();
        if holder.is_some() {
            reuse(&b.mem);
        }
        let winners = views
            .into_iter()
            .map(|v| v.join().unwrap())
            .chain([holder])
            .flatten()
            .count();
        assert_eq!(winners, 1);
        assert!(b.leased.is_released());
        assert_eq!(b.leased.exports(), 0);
    });
}

/// A view starting and ending, an explicit `release()` and the holder's
/// `release_or_defer()` (a dropped handle), all at once: exactly one gets
/// the block, and a view that starts after a release is refused.
#[test]
fn view_racing_release_and_release_or_defer() {
    check(Exhaustive, || {
        let b = Block::new();
        let view = {
            let b = Arc::clone(&b);
            thread::spawn(move || {
                let won = b.view();
                if won.is_some() {
                    reuse(&b.mem);
                }
                won
            })
        };
        let release = {
            let b = Arc::clone(&b);
            thread::spawn(move || match b.leased.release() {
                Ok(block) => {
                    reuse(&b.mem);
                    Some(block)
                }
                Err(_) => None,
            })
        };
        let holder = match b.leased.release_or_defer() {
            Ok(won) => won,
            Err(e) => {
                assert_eq!(e, LeaseError::Released);
                None
            }
        };
        if holder.is_some() {
            reuse(&b.mem);
        }
        let winners = [view.join().unwrap(), release.join().unwrap(), holder]
            .into_iter()
            .flatten()
            .count();
        assert_eq!(winners, 1);
        assert!(b.leased.is_released());
        assert_eq!(b.leased.exports(), 0);
        assert!(b.leased.export().is_err());
    });
}
