//! The lease of a block handed out to a holder: export counting, and a
//! release that happens once and never hands memory on while anything may
//! still hold its address.
//!
//! Consumers of the buffer protocol come in two kinds. Most hold an export
//! for as long as they use the memory (`memoryview`, `np.frombuffer`,
//! `np.asarray`, ctypes' `from_buffer`, `PickleBuffer`; `recv_into`,
//! `readinto`, `hashlib`, `zlib` for the length of the call). Some take the
//! address, end the export at once and keep only a strong reference to the
//! exporting object (`np.ndarray(buffer=...)`). The second kind is
//! invisible here: after its export ends, nothing tells it apart from a
//! consumer that is done. So the memory of a block that was
//! exported at least once goes back only when the lease itself ends
//! ([`Leased::finish`], when the object that owns the lease is destroyed):
//! whatever still holds the address holds that object too. A block never
//! exported goes back at once, since no one can hold its address.
//!
//! `state` packs the count of live exports with two bits: RELEASED (the
//! holder let go; no new export can start) and EXPORTED (an export was made
//! at some point of the lease; it never clears).
//!
//! Invariants:
//! - Exports are only added while RELEASED is clear: `try_export` adds one,
//!   and sets EXPORTED, with a compare-and-swap from a state without
//!   RELEASED.
//! - RELEASED is set once, by a compare-and-swap from a state without it:
//!   exactly one caller releases. `try_release` also requires no live
//!   export.
//! - A release returns the memory at once ([`Release::Now`]) only from
//!   exactly 0: no export ever existed and none can start, so no one else
//!   has ever had the address; the winner may hand the memory to someone
//!   else. Otherwise the release is [`Release::Deferred`] and the memory
//!   stays in the lease until [`Leased::finish`], which takes `&mut self`:
//!   by then nothing else can reach the lease.
//! - Acquire/release ordering on `state` orders a holder's accesses before
//!   the release; [`Leased::finish`] is ordered after every access by the
//!   exclusive borrow that calls it (in the binding, the last reference to
//!   the Python object going away).

use crate::memory::OwnedBlock;
use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::UnsafeCell;

const RELEASED: usize = 1 << (usize::BITS - 1);
const EXPORTED: usize = 1 << (usize::BITS - 2);
const FLAGS: usize = RELEASED | EXPORTED;

/// Why an export or a release was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseError {
    /// The block was released already.
    Released,
    /// The block still has this many live exports.
    Exported(usize),
}

/// What a successful release did with the memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// Never exported: the caller owns the memory now.
    Now,
    /// Exported at some point: the memory stays until the lease ends.
    Deferred,
}

#[derive(Debug, Default)]
pub(crate) struct Lease {
    state: AtomicUsize,
}

impl Lease {
    pub(crate) fn new() -> Self {
        Lease::default()
    }

    /// Registers one export. Fails once the block is released.
    #[inline]
    pub(crate) fn try_export(&self) -> Result<(), LeaseError> {
        self.state
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |s| {
                // The count cannot reach the flag bits: each export is a
                // live object of several bytes, and there are fewer than
                // 2^62 bytes of address space.
                (s & RELEASED == 0).then_some((s + 1) | EXPORTED)
            })
            .map(drop)
            .map_err(|_| LeaseError::Released)
    }

    /// Ends one export registered by `try_export`.
    #[inline]
    pub(crate) fn unexport(&self) {
        let before = self.state.fetch_sub(1, Ordering::Release);
        debug_assert!(before & !FLAGS > 0, "unexport without export");
    }

    /// Releases unless an export is alive.
    #[inline]
    pub(crate) fn try_release(&self) -> Result<Release, LeaseError> {
        self.release_if(true)
    }

    /// Releases, also while exports are alive (they keep working; no new
    /// one can start).
    #[inline]
    pub(crate) fn release_or_defer(&self) -> Result<Release, LeaseError> {
        self.release_if(false)
    }

    fn release_if(&self, unexported: bool) -> Result<Release, LeaseError> {
        // The common case in one compare-and-swap: never exported.
        if self
            .state
            .compare_exchange(0, RELEASED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return Ok(Release::Now);
        }
        let mut refusal = LeaseError::Released;
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                let live = s & !FLAGS;
                if s & RELEASED != 0 {
                    refusal = LeaseError::Released;
                    None
                } else if unexported && live > 0 {
                    refusal = LeaseError::Exported(live);
                    None
                } else {
                    Some(s | RELEASED)
                }
            })
            .map(|before| {
                if before == 0 {
                    Release::Now
                } else {
                    Release::Deferred
                }
            })
            .map_err(|_| refusal)
    }

    /// Released by its holder (the memory may still be deferred).
    #[inline]
    pub(crate) fn is_released(&self) -> bool {
        self.state.load(Ordering::Acquire) & RELEASED != 0
    }

    /// Exported at least once during the lease.
    pub(crate) fn was_exported(&self) -> bool {
        self.state.load(Ordering::Relaxed) & EXPORTED != 0
    }

    /// Live exports right now.
    pub(crate) fn exports(&self) -> usize {
        self.state.load(Ordering::Relaxed) & !FLAGS
    }
}

/// A block handed out to a holder, with its lease: exports (buffer views)
/// are counted, and the memory goes back exactly once, at the release if
/// the block was never exported, else when the lease ends
/// ([`Leased::finish`]).
///
/// Invariants: `ptr`, `len`, `capacity` and `class` never change, and
/// `len <= capacity` (checked in every build: an export of `len` bytes must
/// stay inside the allocation). `block` is touched only by the winner of a
/// `Release::Now` release, or by `finish` (`&mut self`).
pub struct Leased {
    lease: Lease,
    ptr: *mut u8,
    len: usize,
    capacity: usize,
    /// Where the lending pool says the block goes back (its size class),
    /// so that it need not look that up from the size again; only a hint,
    /// which the pool checks (`usize::MAX`: none).
    class: usize,
    block: UnsafeCell<Option<OwnedBlock>>,
}

// SAFETY: `ptr` is only dereferenced by export holders while the lease
// keeps the memory, and by `poison` after a deferred release (the memory
// stays until `finish`); `block` is only accessed by the unique winner of a
// `Now` release or through `&mut self`. Everything else is immutable or
// atomic.
unsafe impl Send for Leased {}
// SAFETY: as for `Send`; no `&self` method gives out shared access to
// `block`.
unsafe impl Sync for Leased {}

impl Leased {
    /// Leases `block`, of which the holder uses the first `len` bytes.
    ///
    /// # Panics
    /// If `len` exceeds the block's capacity: exporting it would expose
    /// memory past the allocation.
    pub fn new(block: OwnedBlock, len: usize) -> Self {
        Self::in_class(block, len, usize::MAX)
    }

    /// [`Leased::new`], with the lending pool's hint of where the block goes
    /// back ([`Leased::class`]).
    #[inline]
    pub(crate) fn in_class(block: OwnedBlock, len: usize, class: usize) -> Self {
        assert!(
            len <= block.capacity(),
            "a lease of {len} bytes on a block of {}",
            block.capacity()
        );
        Leased {
            lease: Lease::new(),
            ptr: block.as_ptr(),
            len,
            capacity: block.capacity(),
            class,
            block: UnsafeCell::new(Some(block)),
        }
    }

    /// The lending pool's hint of where the block goes back (`usize::MAX`:
    /// none).
    #[inline]
    pub(crate) fn class(&self) -> usize {
        self.class
    }

    /// The bytes asked for.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether zero bytes were asked for.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes the block holds (its class size).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the block was released (or its release deferred).
    pub fn is_released(&self) -> bool {
        self.lease.is_released()
    }

    /// Whether the block was ever exported.
    pub fn was_exported(&self) -> bool {
        self.lease.was_exported()
    }

    /// Exports alive now.
    pub fn exports(&self) -> usize {
        self.lease.exports()
    }

    /// Starts an export: the memory stays valid at least until the lease
    /// ends, and stays this holder's until the matching
    /// [`Leased::unexport`].
    pub fn export(&self) -> Result<*mut u8, LeaseError> {
        self.lease.try_export().map(|()| self.ptr)
    }

    /// Ends an export.
    pub fn unexport(&self) {
        self.lease.unexport();
    }

    /// Ends the lease; refused while exported, and after the first success.
    /// Returns the memory if the block was never exported; `None` defers it
    /// to [`Leased::finish`].
    pub fn release(&self) -> Result<Option<OwnedBlock>, LeaseError> {
        Ok(self.take_if(self.lease.try_release()?))
    }

    /// Ends the lease, also while exports are alive (they stay valid).
    /// Returns the memory if the block was never exported.
    pub fn release_or_defer(&self) -> Result<Option<OwnedBlock>, LeaseError> {
        Ok(self.take_if(self.lease.release_or_defer()?))
    }

    /// Fills the memory with `byte` if the block was released with its
    /// memory deferred and no export is alive, so that a consumer that kept
    /// the address without an export (`np.ndarray(buffer=block)`) reads
    /// `byte` from now on instead of what the holder wrote. Returns whether
    /// it filled.
    pub fn poison(&self, byte: u8) -> bool {
        if !self.lease.is_released() || self.lease.exports() > 0 {
            return false;
        }
        // SAFETY: released, so no export can start, and none is alive: no
        // one may use the memory any longer. It stays allocated until
        // `finish` (`&mut self`, so not concurrently). The write goes
        // through the raw pointer (a consumer that misbehaves may still
        // read it, which is what this makes visible), within `capacity`.
        unsafe { std::ptr::write_bytes(self.ptr, byte, self.capacity) };
        true
    }

    /// Whether the lease still holds its memory (`finish` would return it).
    pub fn holds_memory(&mut self) -> bool {
        // SAFETY: `&mut self`: no other access to the cell can exist.
        self.block.with_mut(|b| unsafe { (*b).is_some() })
    }

    /// Ends the lease's life: the memory if the lease still holds it (never
    /// released, or released with the memory deferred), with whether the
    /// holder had released it. `None` if a release returned it already.
    pub fn finish(&mut self) -> Option<(OwnedBlock, bool)> {
        let released = self.lease.is_released();
        // SAFETY: `&mut self`: no other access to the cell can exist.
        let block = self.block.with_mut(|b| unsafe { (*b).take() })?;
        Some((block, released))
    }

    /// Only for the winner of a `Now` release.
    fn take_if(&self, release: Release) -> Option<OwnedBlock> {
        match release {
            Release::Deferred => None,
            Release::Now => {
                // SAFETY: the caller won a `Now` release: no export ever
                // existed and none can start, and `finish` needs `&mut
                // self`, so this access is exclusive (module invariants).
                let block = self.block.with_mut(|b| unsafe { (*b).take() });
                Some(block.expect("a lease is released once, and holds its block until then"))
            }
        }
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
        assert!(l.was_exported());
        assert_eq!(l.try_release(), Ok(Release::Deferred), "exported once");
        assert!(l.is_released());
        assert_eq!(l.try_release(), Err(LeaseError::Released));
        assert_eq!(l.release_or_defer(), Err(LeaseError::Released));
        assert_eq!(l.try_export(), Err(LeaseError::Released));
    }

    #[test]
    fn only_a_never_exported_lease_releases_now() {
        let fresh = Lease::new();
        assert_eq!(fresh.try_release(), Ok(Release::Now));
        let fresh = Lease::new();
        assert_eq!(fresh.release_or_defer(), Ok(Release::Now));
        let viewed = Lease::new();
        viewed.try_export().unwrap();
        assert_eq!(viewed.release_or_defer(), Ok(Release::Deferred));
        assert_eq!(viewed.exports(), 1, "the live export keeps working");
        viewed.unexport();
        assert!(viewed.is_released());
    }

    #[test]
    fn an_exported_block_comes_back_only_when_the_lease_ends() {
        let mut l = Leased::new(OwnedBlock::zeroed(64, 64).unwrap(), 10);
        let ptr = l.export().unwrap();
        assert_eq!(l.release().unwrap_err(), LeaseError::Exported(1));
        l.unexport();
        // What `np.ndarray(buffer=...)` does: the export ended, the address
        // is still used. The release must not hand the memory on.
        assert!(l.release().unwrap().is_none());
        assert_eq!(l.release().unwrap_err(), LeaseError::Released);
        assert_eq!(l.export().unwrap_err(), LeaseError::Released);
        assert!(l.holds_memory());
        let (block, released) = l.finish().unwrap();
        assert!(released);
        assert_eq!(block.as_ptr(), ptr);
        assert!(!l.holds_memory());
        assert!(l.finish().is_none());
    }

    #[test]
    fn a_never_exported_block_comes_back_at_release() {
        let mut l = Leased::new(OwnedBlock::zeroed(64, 64).unwrap(), 64);
        let block = l.release_or_defer().unwrap().expect("never exported");
        assert_eq!(block.capacity(), 64);
        assert!(l.finish().is_none(), "given back once");
        let mut kept = Leased::new(OwnedBlock::zeroed(64, 64).unwrap(), 1);
        let (_, released) = kept.finish().expect("never released");
        assert!(!released);
    }

    #[test]
    fn poison_fills_only_released_unexported_memory() {
        let l = Leased::new(OwnedBlock::zeroed(128, 64).unwrap(), 100);
        let ptr = l.export().unwrap();
        // SAFETY: in bounds of a live export.
        let at = |i: usize| unsafe { ptr.add(i).read() };
        assert!(!l.poison(0xDB), "not released");
        assert!(l.release_or_defer().unwrap().is_none());
        assert!(!l.poison(0xDB), "an export is alive");
        assert_eq!(at(0), 0);
        l.unexport();
        assert!(l.poison(0xDB));
        assert!((0..128).all(|i| at(i) == 0xDB));
    }

    #[test]
    #[should_panic(expected = "a lease of 65 bytes on a block of 64")]
    fn a_lease_longer_than_its_block_is_refused() {
        let _ = Leased::new(OwnedBlock::zeroed(64, 64).unwrap(), 65);
    }

    /// Exporters and releasers race: a release never wins while an export
    /// is alive, exactly one wins, and it is `Now` only if no export ever
    /// started.
    #[test]
    fn racing_exports_and_releases() {
        for _ in 0..200 {
            let l = Arc::new(Lease::new());
            let live = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let (l, live) = (Arc::clone(&l), Arc::clone(&live));
                    std::thread::spawn(move || {
                        let mut wins = Vec::new();
                        for _ in 0..50 {
                            if t % 2 == 0 {
                                if l.try_export().is_ok() {
                                    live.fetch_add(1, Ordering::SeqCst);
                                    std::hint::spin_loop();
                                    live.fetch_sub(1, Ordering::SeqCst);
                                    l.unexport();
                                }
                            } else if let Ok(how) = l.try_release() {
                                assert_eq!(live.load(Ordering::SeqCst), 0);
                                wins.push(how);
                            }
                        }
                        wins
                    })
                })
                .collect();
            let mut wins: Vec<Release> = threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect();
            // If the exporters kept the releasers out, release now.
            wins.extend(l.try_release().ok());
            assert_eq!(wins.len(), 1);
            assert_eq!(wins[0] == Release::Now, !l.was_exported());
        }
    }
}
