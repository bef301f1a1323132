//! The lease of a growable buffer handed out to a holder: its bytes, their
//! exports, and a release that never hands memory on, or frees it, while
//! anything may still hold its address.
//!
//! The rule is the one of [`crate::lease`] for blocks: a consumer of an
//! export may keep the address after the export ends, holding only the
//! object that owns the lease (`np.ndarray(buffer=buf)`), so once a buffer
//! has been exported its allocation lives until the lease ends
//! ([`LeasedBuffer::finish`]). A buffer also grows: a write that outgrows an
//! exported buffer copies its bytes to a new allocation and keeps the old
//! one (`retired`) until the lease ends, where a plain `Vec` would free it.
//!
//! Invariants (all of `State`, under one lock held for short, call-free
//! sections: a [`FlagLock`], one compare-and-swap to take and one store to
//! let go, where a `Mutex` cost a buffer's get+write+release three locked
//! swaps and its poisoning checks, about 45 instructions):
//! - While `exports > 0` the bytes do not change: every change checks it.
//! - `released` is set once; after it there is no new export, read or
//!   change.
//! - `data` leaves the lease once: at the release if no export ever
//!   existed (`exported` clear: no one has had the address), else in
//!   `finish`, which takes `&mut self` (nothing else can reach the lease).
//! - Once `exported` is set, no allocation the bytes have lived in since is
//!   freed before `finish`: growth retires the old allocation instead.

use crate::sync::FlagLock;

/// Why a buffer operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferError {
    /// The buffer was released.
    Released,
    /// The buffer cannot change or be released while this many exports are
    /// alive.
    Exported(usize),
    /// No memory for `more` bytes after `len`.
    TooLarge {
        /// Bytes written.
        len: usize,
        /// Bytes asked for beyond them.
        more: usize,
    },
}

struct State {
    /// The bytes; `None` once they left the lease.
    data: Option<Vec<u8>>,
    /// Live exports.
    exports: usize,
    /// Exported at some point of the lease.
    exported: bool,
    /// The holder let go.
    released: bool,
    /// Allocations the bytes outgrew after an export.
    retired: Vec<Vec<u8>>,
}

impl State {
    /// The bytes, while the holder has them.
    fn live(&self) -> Result<&Vec<u8>, BufferError> {
        match &self.data {
            Some(data) if !self.released => Ok(data),
            _ => Err(BufferError::Released),
        }
    }

    /// The bytes, for a change: refused after release and while exported.
    fn changeable(&mut self) -> Result<&mut Vec<u8>, BufferError> {
        self.live()?;
        if self.exports > 0 {
            return Err(BufferError::Exported(self.exports));
        }
        Ok(self.data.as_mut().expect("live"))
    }

    /// Makes room for `n` more bytes; once exported, by moving to a new
    /// allocation and retiring the old one.
    fn reserve(&mut self, n: usize) -> Result<&mut Vec<u8>, BufferError> {
        let exported = self.exported;
        let data = self.changeable()?;
        let len = data.len();
        let too_large = BufferError::TooLarge { len, more: n };
        if data.capacity() - len >= n {
            // Within the capacity: `Vec` never reallocates (checked by
            // `appends_within_the_capacity_stay_in_place`).
        } else if !exported {
            data.try_reserve(n).map_err(|_| too_large)?;
        } else {
            let needed = len.checked_add(n).ok_or(too_large)?;
            // Doubling, as `Vec` grows, so that repeated writes stay
            // amortised.
            let wanted = needed.max(data.capacity().saturating_mul(2));
            let mut moved = Vec::new();
            moved
                .try_reserve_exact(wanted)
                .or_else(|_| moved.try_reserve_exact(needed))
                .map_err(|_| too_large)?;
            moved.extend_from_slice(data);
            let old = std::mem::replace(data, moved);
            self.retired.push(old);
        }
        Ok(self.data.as_mut().expect("live"))
    }
}

/// A growable buffer handed out by a [`BufferPool`](crate::BufferPool): readable and
/// writable until released, exported (borrowed as a view) at most while
/// not being resized, released once (deferred while exports live).
pub struct LeasedBuffer {
    state: FlagLock<State>,
}

impl LeasedBuffer {
    /// Leases `data` (empty, with the capacity the pool chose).
    pub fn new(data: Vec<u8>) -> Self {
        LeasedBuffer {
            state: FlagLock::new(State {
                data: Some(data),
                exports: 0,
                exported: false,
                released: false,
                retired: Vec::new(),
            }),
        }
    }

    /// `f` of the state, under the lock.
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        self.state.with(f)
    }

    /// Released by its holder (the bytes may still be in the lease).
    pub fn is_released(&self) -> bool {
        self.with(|state| state.live().is_err())
    }

    /// Exported at least once during the lease.
    pub fn was_exported(&self) -> bool {
        self.with(|state| state.exported)
    }

    /// Live exports right now.
    pub fn exports(&self) -> usize {
        self.with(|state| state.exports)
    }

    /// Bytes written, unless released.
    pub fn len(&self) -> Result<usize, BufferError> {
        self.with(|state| state.live().map(Vec::len))
    }

    /// Whether no byte is written, unless released.
    pub fn is_empty(&self) -> Result<bool, BufferError> {
        self.with(|state| state.live().map(Vec::is_empty))
    }

    /// Bytes the buffer holds without growing, unless released.
    pub fn capacity(&self) -> Result<usize, BufferError> {
        self.with(|state| state.live().map(Vec::capacity))
    }

    /// Runs `f` on the bytes, under the buffer's lock: `f` must not call
    /// back into this buffer.
    pub fn read<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, BufferError> {
        self.with(|state| state.live().map(|data| f(data)))
    }

    /// Appends `src`.
    pub fn append(&self, src: &[u8]) -> Result<(), BufferError> {
        self.with(|state| {
            state.reserve(src.len())?.extend_from_slice(src);
            Ok(())
        })
    }

    /// Appends `n` bytes from `src`, memory that others may write meanwhile
    /// (another object's export): it is read through the raw pointer only.
    ///
    /// # Safety
    /// `src` must be valid for reads of `n` bytes for the whole call.
    pub unsafe fn append_raw(&self, src: *const u8, n: usize) -> Result<(), BufferError> {
        self.with(|state| {
            let data = state.reserve(n)?;
            // SAFETY: `reserve` made room for `n` bytes after `len`, which
            // the copy initialises; the caller vouches for `src`. The
            // regions do not overlap: `data` is refused as a source while it
            // is exported.
            unsafe {
                std::ptr::copy_nonoverlapping(src, data.as_mut_ptr().add(data.len()), n);
                data.set_len(data.len() + n);
            }
            Ok(())
        })
    }

    /// Empties the buffer, keeping its capacity.
    pub fn clear(&self) -> Result<(), BufferError> {
        self.with(|state| {
            state.changeable()?.clear();
            Ok(())
        })
    }

    /// Starts an export of the bytes: they stay unchanged until the
    /// matching [`LeasedBuffer::unexport`], and allocated until the lease
    /// ends.
    pub fn export(&self) -> Result<(*const u8, usize), BufferError> {
        self.with(|state| {
            let view = state.live().map(|data| (data.as_ptr(), data.len()))?;
            state.exports += 1;
            state.exported = true;
            Ok(view)
        })
    }

    /// Ends an export.
    pub fn unexport(&self) {
        self.with(|state| {
            debug_assert!(state.exports > 0, "unexport without export");
            state.exports -= 1;
        });
    }

    /// Ends the lease; refused while exported, and after the first success.
    /// Returns the bytes if the buffer was never exported; `None` defers
    /// them to [`LeasedBuffer::finish`].
    pub fn release(&self) -> Result<Option<Vec<u8>>, BufferError> {
        self.let_go(true)
    }

    /// Ends the lease, also while exports are alive (they keep working).
    pub fn release_or_defer(&self) -> Result<Option<Vec<u8>>, BufferError> {
        self.let_go(false)
    }

    fn let_go(&self, unexported: bool) -> Result<Option<Vec<u8>>, BufferError> {
        self.with(|state| {
            state.live()?;
            if unexported && state.exports > 0 {
                return Err(BufferError::Exported(state.exports));
            }
            state.released = true;
            Ok(if state.exported {
                None
            } else {
                state.data.take()
            })
        })
    }

    /// Ends the lease's life: the bytes if the lease still holds them, with
    /// whether the holder had released them; `None` if a release returned
    /// them already. Retired allocations are freed.
    pub fn finish(&mut self) -> Option<(Vec<u8>, bool)> {
        self.with(|state| {
            state.retired.clear();
            let data = state.data.take()?;
            Some((data, state.released))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leased(bytes: &[u8], capacity: usize) -> LeasedBuffer {
        let mut data = Vec::with_capacity(capacity);
        data.extend_from_slice(bytes);
        LeasedBuffer::new(data)
    }

    #[test]
    fn nothing_changes_while_exported_and_a_release_waits() {
        let b = leased(b"abc", 16);
        let (ptr, len) = b.export().unwrap();
        assert_eq!(len, 3);
        assert_eq!(b.append(b"d"), Err(BufferError::Exported(1)));
        assert_eq!(b.clear(), Err(BufferError::Exported(1)));
        assert_eq!(b.release(), Err(BufferError::Exported(1)));
        // SAFETY: the export keeps the 3 bytes alive and unchanged.
        assert_eq!(unsafe { std::slice::from_raw_parts(ptr, len) }, b"abc");
        b.unexport();
        b.append(b"d").unwrap();
        assert_eq!(b.read(<[u8]>::to_vec), Ok(b"abcd".to_vec()));
    }

    #[test]
    fn a_never_exported_buffer_comes_back_at_release() {
        let mut b = leased(b"abc", 16);
        b.append(&[7; 100]).unwrap(); // grows as a plain Vec
        let data = b.release().unwrap().expect("never exported");
        assert_eq!(data.len(), 103);
        assert!(b.is_released());
        assert_eq!(b.len(), Err(BufferError::Released));
        assert_eq!(b.release(), Err(BufferError::Released));
        assert!(b.finish().is_none(), "given back once");
    }

    #[test]
    fn an_exported_buffer_comes_back_at_the_end_of_the_lease() {
        let mut b = leased(b"abc", 16);
        let (ptr, _) = b.export().unwrap();
        b.unexport();
        assert_eq!(b.release(), Ok(None));
        assert_eq!(b.export(), Err(BufferError::Released));
        assert_eq!(b.read(|d| d.len()), Err(BufferError::Released));
        let (data, released) = b.finish().unwrap();
        assert!(released);
        assert_eq!(data.as_ptr(), ptr);
        let mut kept = leased(b"", 4);
        assert_eq!(kept.finish().map(|(_, released)| released), Some(false));
    }

    #[test]
    fn a_with_exit_while_exported_defers_and_the_view_keeps_reading() {
        let mut b = leased(b"xyz", 8);
        let (ptr, len) = b.export().unwrap();
        assert_eq!(b.release_or_defer(), Ok(None));
        assert_eq!(b.exports(), 1);
        // SAFETY: the export is alive.
        assert_eq!(unsafe { std::slice::from_raw_parts(ptr, len) }, b"xyz");
        b.unexport();
        assert!(b.finish().is_some());
    }

    #[test]
    fn growth_after_an_export_moves_the_bytes_and_keeps_the_old_ones() {
        let b = leased(b"abcd", 4);
        let (old, len) = b.export().unwrap();
        b.unexport();
        // What `np.ndarray(buffer=buf)` keeps: the address, no export.
        for _ in 0..5 {
            b.append(&[b'!'; 1000]).unwrap();
            // SAFETY: the retired allocation lives until the lease ends.
            assert_eq!(unsafe { std::slice::from_raw_parts(old, len) }, b"abcd");
        }
        let (new, _) = b.export().unwrap();
        b.unexport();
        assert_ne!(new, old);
        assert_eq!(b.len(), Ok(5004));
        assert_eq!(b.read(|d| d[..4].to_vec()), Ok(b"abcd".to_vec()));
    }

    #[test]
    fn appends_within_the_capacity_stay_in_place() {
        let b = leased(b"", 64);
        let (first, _) = b.export().unwrap();
        b.unexport();
        b.append(&[1; 64]).unwrap();
        b.clear().unwrap();
        b.append(&[2; 10]).unwrap();
        let (now, len) = b.export().unwrap();
        assert_eq!((now, len), (first, 10));
        b.unexport();
    }

    #[test]
    fn impossible_growth_is_an_error_and_changes_nothing() {
        for exported in [false, true] {
            let b = leased(b"abc", 3);
            if exported {
                b.export().unwrap();
                b.unexport();
            }
            assert_eq!(
                b.append_raw_len(usize::MAX),
                Err(BufferError::TooLarge {
                    len: 3,
                    more: usize::MAX
                })
            );
            assert_eq!(b.read(<[u8]>::to_vec), Ok(b"abc".to_vec()));
        }
    }

    impl LeasedBuffer {
        /// `reserve` alone, for sizes no source could have.
        fn append_raw_len(&self, n: usize) -> Result<(), BufferError> {
            self.with(|state| state.reserve(n).map(drop))
        }
    }

    #[test]
    fn raw_appends_copy_from_shared_memory() {
        let b = leased(b"", 0);
        let src = [9u8; 33];
        // SAFETY: `src` is valid for 33 bytes.
        unsafe { b.append_raw(src.as_ptr(), src.len()) }.unwrap();
        assert_eq!(b.read(<[u8]>::to_vec), Ok(vec![9; 33]));
    }
}
