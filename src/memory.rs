//! Aligned heap blocks owned by Rust.
//!
//! Invariants:
//! - An [`OwnedBlock`] uniquely owns one allocation of `layout`, made by the
//!   global allocator, and frees it exactly once, in `Drop`.
//! - The bytes are never reached through a Rust reference (`&[u8]`): other
//!   code (Python, through the buffer protocol) may read and write them at
//!   any time, so this module only touches them through raw pointers.
//! - `clean` is true only while every byte of the block is zero.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

/// The allocation could not be made: too large for the address space, or
/// the allocator is out of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocError {
    /// The bytes asked for.
    pub size: usize,
}

/// An aligned block of memory that Rust owns, freed when dropped.
pub struct OwnedBlock {
    ptr: NonNull<u8>,
    layout: Layout,
    clean: AtomicBool,
}

// SAFETY: an OwnedBlock is the only owner of its allocation, which is plain
// memory with no thread affinity, so moving it to another thread is sound.
unsafe impl Send for OwnedBlock {}
// SAFETY: through `&OwnedBlock` the bytes are only written with raw-pointer
// writes (`zero`), never through a reference, and `clean` is atomic; there is
// no other interior mutability.
unsafe impl Sync for OwnedBlock {}

impl OwnedBlock {
    /// A zeroed block of `capacity` bytes (at least 1) aligned to `align`
    /// (a power of two). Fresh memory is always zeroed, so a new block never
    /// shows what the process freed before.
    pub fn zeroed(capacity: usize, align: usize) -> Result<Self, AllocError> {
        let layout = Layout::from_size_align(capacity.max(1), align)
            .map_err(|_| AllocError { size: capacity })?;
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or(AllocError { size: capacity })?;
        Ok(OwnedBlock {
            ptr,
            layout,
            clean: AtomicBool::new(true),
        })
    }

    /// Usable bytes (the class size).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.layout.size()
    }

    /// The block's alignment in bytes.
    #[inline]
    pub fn align(&self) -> usize {
        self.layout.align()
    }

    /// The start of the block, for exporting to a buffer consumer.
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Whether every byte is known to be zero.
    #[inline]
    pub(crate) fn is_clean(&self) -> bool {
        self.clean.load(Ordering::Relaxed)
    }

    /// Forget that the block is zero (it is about to be handed out).
    #[inline]
    pub(crate) fn mark_dirty(&self) {
        self.clean.store(false, Ordering::Relaxed);
    }

    /// Zeroes the whole block unless it is known to be clean.
    pub fn zero(&self) {
        if !self.is_clean() {
            self.zero_prefix(self.capacity());
            self.clean.store(true, Ordering::Relaxed);
        }
    }

    /// Zeroes the first `n` bytes (capped at the capacity).
    pub(crate) fn zero_prefix(&self, n: usize) {
        // SAFETY: the allocation is live and at least `capacity` bytes long,
        // and the write goes through a raw pointer, as the module requires.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr(), 0, n.min(self.capacity())) }
    }

    /// Fills the block with `byte` (a debug poison for released memory).
    pub(crate) fn fill(&self, byte: u8) {
        // SAFETY: as in `zero_prefix`.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr(), byte, self.capacity()) }
        self.clean.store(byte == 0, Ordering::Relaxed);
    }
}

impl Drop for OwnedBlock {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed(layout)` and is freed only here.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

impl std::fmt::Debug for OwnedBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedBlock")
            .field("capacity", &self.capacity())
            .field("align", &self.align())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn byte(b: &OwnedBlock, i: usize) -> u8 {
        assert!(i < b.capacity());
        // SAFETY: in bounds of a live allocation; no one else writes here.
        unsafe { b.as_ptr().add(i).read() }
    }

    #[test]
    fn fresh_blocks_are_aligned_and_zero() {
        for align in [8, 64, 4096] {
            let b = OwnedBlock::zeroed(1000, align).unwrap();
            assert_eq!(b.as_ptr() as usize % align, 0);
            assert_eq!(b.capacity(), 1000);
            assert!(b.is_clean());
            assert!((0..1000).all(|i| byte(&b, i) == 0));
        }
    }

    #[test]
    fn zero_clears_what_was_written() {
        let b = OwnedBlock::zeroed(256, 64).unwrap();
        b.fill(0xAB);
        assert!(!b.is_clean());
        assert_eq!(byte(&b, 255), 0xAB);
        b.zero_prefix(10);
        assert_eq!((byte(&b, 9), byte(&b, 10)), (0, 0xAB));
        b.zero();
        assert!(b.is_clean());
        assert!((0..256).all(|i| byte(&b, i) == 0));
    }

    #[test]
    fn impossible_sizes_fail_instead_of_aborting() {
        assert_eq!(
            OwnedBlock::zeroed(usize::MAX - 64, 64).unwrap_err().size,
            usize::MAX - 64
        );
        assert!(
            OwnedBlock::zeroed(8, 3).is_err(),
            "alignment must be a power of two"
        );
        assert_eq!(OwnedBlock::zeroed(0, 8).unwrap().capacity(), 1);
    }
}
