//! The export/release protocol of a leased block (`Lease` and `Leased` in
//! `lease.rs`).
//!
//! The block's bytes are modelled by loom cells `mem`, one per view so that
//! views do not race each other: view `i` writes `mem[i]` while its export
//! is alive, and whoever gets the memory back writes them all (it may hand
//! the memory to someone else). The holder of a `Leased` is modelled by an
//! `Arc`: the lease ends (`finish`) when the last clone is dropped, as a
//! Python `Block` is destroyed when its last reference goes (and a consumer
//! that keeps the address without an export, like `np.ndarray(buffer=)`,
//! holds such a reference). loom reports any two writes to the cells that
//! are not ordered by happens-before, so these models prove, for every
//! interleaving within the bound:
//! - no release while exported: a release that hands the memory on never
//!   overlaps a live export, and a block exported at any point is handed on
//!   only by the end of the lease, after every access through any export;
//! - the memory comes back exactly once (a `Now` release or `finish`), and
//!   it alone takes the block out of `Leased` (its cell is a loom cell too);
//! - no export starts after a release, and the final state is released with
//!   no export.

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;

use super::Bound::Exhaustive;
use super::{check, check_returned_once, spawn_with};
use crate::lease::{Lease, LeaseError, Leased, Release};
use crate::memory::OwnedBlock;

/// A lease and the bytes it guards.
struct Guarded {
    lease: Lease,
    mem: Mem,
}

/// A leased block and a model of its bytes. Dropping the last reference
/// ends the lease: memory still held comes back, and is reused at once.
struct Block {
    leased: Leased,
    mem: Mem,
    /// How many times the memory came back (a release or the end).
    returned: Arc<AtomicUsize>,
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

/// The owner of the memory after it came back writes all of it.
fn reuse(mem: &Mem) {
    for part in mem {
        // SAFETY: as in `write`: loom reports an overlapping access.
        part.with_mut(|p| unsafe { *p = 0 });
    }
}

impl Block {
    /// A new lease, and the count of times its memory came back.
    fn lent() -> (Arc<Self>, Arc<AtomicUsize>) {
        let returned = Arc::new(AtomicUsize::new(0));
        let block = OwnedBlock::zeroed(64, 64).unwrap();
        let lent = Arc::new(Block {
            leased: Leased::new(block, 64),
            mem: mem(),
            returned: Arc::clone(&returned),
        });
        (lent, returned)
    }

    /// An explicit `release()`: what comes back at once is reused.
    fn release_now(&self) {
        if let Ok(block) = self.leased.release() {
            self.came_back(block);
        }
    }

    /// The holder lets go (`release_or_defer`, a `with` exit): unless
    /// released already, what comes back at once is reused.
    fn let_go(&self) {
        match self.leased.release_or_defer() {
            Ok(block) => self.came_back(block),
            Err(e) => assert_eq!(e, LeaseError::Released),
        }
    }

    /// The memory came back to this party: it reuses it.
    fn came_back(&self, block: Option<OwnedBlock>) {
        if block.is_some() {
            reuse(&self.mem);
            self.returned.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// View `i`: export, write, unexport. Whether the export was allowed.
    fn view(&self, i: usize) -> bool {
        if self.leased.export().is_err() {
            return false;
        }
        write(&self.mem, i);
        self.leased.unexport();
        true
    }

    /// What `np.ndarray(buffer=block)` does: export, end the export at
    /// once, then use the address under a reference to the block.
    fn raw_view(&self, i: usize) -> bool {
        if self.leased.export().is_err() {
            return false;
        }
        self.leased.unexport();
        write(&self.mem, i);
        true
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let block = self.leased.finish().map(|(block, _)| block);
        self.came_back(block);
    }
}

/// Two exporters race `try_release`: the release never wins while an
/// export is alive, a release returns the memory at once only if no export
/// ever started, and of it and a late release exactly one wins.
#[test]
fn exports_racing_try_release() {
    check(Exhaustive, || {
        let g = Arc::new(Guarded {
            lease: Lease::new(),
            mem: mem(),
        });
        let views: Vec<_> = (0..2)
            .map(|i| {
                spawn_with(&g, move |g| {
                    if g.lease.try_export().is_ok() {
                        write(&g.mem, i);
                        g.lease.unexport();
                    }
                })
            })
            .collect();
        let won = match g.lease.try_release() {
            Ok(how) => Some(how),
            Err(LeaseError::Exported(n)) => {
                assert!(n > 0);
                None
            }
            Err(LeaseError::Released) => panic!("nobody else releases"),
        };
        if won == Some(Release::Now) {
            reuse(&g.mem);
            assert_eq!(g.lease.try_export(), Err(LeaseError::Released));
        }
        for v in views {
            v.join().unwrap();
        }
        let late = match won {
            Some(_) => None,
            None => Some(g.lease.try_release().expect("the views are done")),
        };
        assert_eq!(
            won.or(late),
            Some(if g.lease.was_exported() {
                Release::Deferred
            } else {
                Release::Now
            })
        );
        assert!(g.lease.is_released());
        assert_eq!(g.lease.exports(), 0);
        assert_eq!(g.lease.try_release(), Err(LeaseError::Released));
    });
}

/// Two live views end while the holder lets go (`release_or_defer`) and
/// drops its reference: the memory comes back once, when the last view's
/// reference goes, after every view's write.
#[test]
fn views_outlive_the_holders_release() {
    check_returned_once(Block::lent, |b| {
        b.leased.export().unwrap();
        b.leased.export().unwrap();
        let views: Vec<_> = (0..2)
            .map(|i| {
                spawn_with(&b, move |b| {
                    write(&b.mem, i);
                    b.leased.unexport();
                })
            })
            .collect();
        assert!(b.leased.release_or_defer().unwrap().is_none());
        assert!(b.leased.is_released());
        drop(b);
        for v in views {
            v.join().unwrap();
        }
    });
}

/// The crash of issue 11: a consumer ends its export at once and keeps
/// using the address under a reference to the block, while the holder
/// releases (`release()` and a `with` exit race). The memory comes back
/// once, after the consumer's write: never to a release that ran after the
/// export.
#[test]
fn a_raw_address_racing_release_and_release_or_defer() {
    check_returned_once(Block::lent, |b| {
        let consumer = spawn_with(&b, move |b| {
            b.raw_view(0);
        });
        let releaser = spawn_with(&b, move |b| b.release_now());
        b.let_go();
        assert!(b.leased.is_released());
        assert!(b.leased.export().is_err());
        drop(b);
        consumer.join().unwrap();
        releaser.join().unwrap();
    });
}

/// A view starting and ending, an explicit `release()` and the holder's
/// `release_or_defer()`, all at once: the memory comes back once, never
/// under the view, and a view that starts after a release is refused.
#[test]
fn view_racing_release_and_release_or_defer() {
    check_returned_once(Block::lent, |b| {
        let view = spawn_with(&b, move |b| b.view(1));
        let release = spawn_with(&b, move |b| b.release_now());
        b.let_go();
        let viewed = view.join().unwrap();
        release.join().unwrap();
        assert_eq!(viewed, b.leased.was_exported());
        assert!(b.leased.is_released());
        assert_eq!(b.leased.exports(), 0);
        assert!(b.leased.export().is_err());
        drop(b);
    });
}
