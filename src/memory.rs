//! Aligned heap blocks owned by Rust.
//!
//! Invariants:
//! - An [`OwnedBlock`] uniquely owns one allocation of `layout`, made by the
//!   global allocator, and frees it exactly once, in `Drop`.
//! - The bytes are never reached through a Rust reference (`&[u8]`): other
//!   code (Python, through the buffer protocol) may read and write them at
//!   any time, so this module only touches them through raw pointers.
//! - `clean` is true only while every byte of the block is zero.
//! - A block of at least [`MAPPED_FROM`] bytes (on Unix, alignment up to a
//!   page) is an anonymous private mapping of its own, not a heap
//!   allocation: the kernel's zero pages, made resident only as they are
//!   touched, and returned to the kernel when the block is freed. So a
//!   block is never resident beyond the bytes its holders wrote (the heap's
//!   `calloc` cannot promise that: over-aligned or reused heap memory is
//!   zeroed, and made resident, whole).

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

/// Blocks of at least this many bytes are mapped (see the module's
/// invariants): a mapping costs two system calls, little beside the page
/// faults of filling this much memory once.
pub const MAPPED_FROM: usize = 256 << 10;

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
// writes (`zero`), never through a reference, and `dirty` is atomic; there is
// no other interior mutability.
unsafe impl Sync for OwnedBlock {}

impl OwnedBlock {
    /// A zeroed block of `capacity` bytes (at least 1) aligned to `align`
    /// (a power of two). Fresh memory is always zeroed, so a new block never
    /// shows what the process freed before; a mapped one (see `MAPPED_FROM`)
    /// is not even resident until it is touched.
    // Out of line: it runs on a pool's miss, and inlined into every get it
    // made the hot path's code larger (and slower: 70 instructions a
    // 64-byte get+release once it could map memory).
    #[inline(never)]
    pub fn zeroed(capacity: usize, align: usize) -> Result<Self, AllocError> {
        let layout = Layout::from_size_align(capacity.max(1), align)
            .map_err(|_| AllocError { size: capacity })?;
        let raw = if mapped(layout) {
            map(layout.size())
        } else {
            // SAFETY: the layout has a non-zero size.
            unsafe { alloc_zeroed(layout) }
        };
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

    /// Zeroes the first `n` bytes and records the block clean: the caller
    /// knows that nothing past them was written since it was last clean
    /// (a block that was clean when lent as `n` bytes, come back). The rest
    /// is not touched, so a mapped block's pages there stay not resident.
    pub(crate) fn zero_written(&self, n: usize) {
        self.zero_prefix(n);
        self.clean.store(true, Ordering::Relaxed);
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
        free(self.ptr.as_ptr(), self.layout);
    }
}

/// Frees a block's memory the way it was made (`layout` decides). Out of
/// line, as `zeroed`: every path that may drop a block inlines `drop`.
#[inline(never)]
fn free(ptr: *mut u8, layout: Layout) {
    if mapped(layout) {
        unmap(ptr, layout.size());
    } else {
        // SAFETY: `ptr` came from `alloc_zeroed(layout)` (not mapped: the
        // same `layout` decided), and `drop`, the only caller, runs once.
        unsafe { dealloc(ptr, layout) }
    }
}

/// Whether a block of `layout` is mapped rather than taken from the heap: a
/// pure function of the layout, so `Drop` frees it the way it was made.
#[inline]
fn mapped(layout: Layout) -> bool {
    cfg!(unix) && layout.size() >= MAPPED_FROM && layout.align() <= 4096
}

/// A fresh private anonymous mapping of `size` bytes (zero, page-aligned:
/// at least 4096), or null.
#[cfg(unix)]
fn map(size: usize) -> *mut u8 {
    // SAFETY: a new anonymous private mapping aliases no existing memory;
    // the arguments are valid for any `size` (the kernel refuses what it
    // cannot map, with MAP_FAILED).
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        raw.cast()
    }
}

#[cfg(unix)]
fn unmap(ptr: *mut u8, size: usize) {
    // SAFETY: `ptr` and `size` are a whole mapping made by `map` for the
    // block being dropped, unmapped only here; nothing reaches it after.
    let done = unsafe { libc::munmap(ptr.cast(), size) };
    debug_assert_eq!(done, 0, "munmap of a block's own mapping failed");
}

#[cfg(not(unix))]
fn map(_: usize) -> *mut u8 {
    unreachable!("only Unix maps blocks")
}

#[cfg(not(unix))]
fn unmap(_: *mut u8, _: usize) {
    unreachable!("only Unix maps blocks")
}

impl std::fmt::Debug for OwnedBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedBlock")
            .field("capacity", &self.capacity())
            .field("align", &self.align())
            .finish()
    }
}

/// How many pages of `len` bytes from `ptr` (page-aligned) are resident.
#[cfg(all(test, target_os = "linux"))]
pub(crate) fn resident_pages(ptr: *const u8, len: usize) -> usize {
    let mut pages = vec![0u8; len.div_ceil(4096)];
    // SAFETY: `ptr..ptr + len` is mapped (a live block), `ptr` is page-
    // aligned, and the vector has one byte per 4096-byte page of it (pages
    // are 4096 bytes on the Linux targets this runs on).
    let done = unsafe { libc::mincore(ptr as *mut libc::c_void, len, pages.as_mut_ptr()) };
    assert_eq!(done, 0, "mincore failed");
    pages.iter().filter(|&&p| p & 1 != 0).count()
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
    fn zero_written_clears_only_what_was_written() {
        let b = OwnedBlock::zeroed(1 << 20, 64).unwrap();
        b.mark_dirty();
        // SAFETY: in bounds of a block we own.
        unsafe { std::ptr::write_bytes(b.as_ptr(), 0xAB, 5000) };
        b.zero_written(5000);
        assert!(b.is_clean());
        assert!((0..(1 << 20)).step_by(7).all(|i| byte(&b, i) == 0));
        assert!((0..5000).all(|i| byte(&b, i) == 0));
    }

    /// A large block is a mapping of its own: page-aligned whatever the
    /// alignment asked, and resident only where written, also after a zeroing
    /// of what was written (issue 13: never resident beyond what was asked).
    #[test]
    #[cfg(target_os = "linux")]
    fn large_blocks_are_resident_only_where_written() {
        let size = 4 << 20;
        let b = OwnedBlock::zeroed(size, 64).unwrap();
        assert_eq!(b.as_ptr() as usize % 4096, 0);
        assert_eq!(resident_pages(b.as_ptr(), size), 0);
        b.mark_dirty();
        // SAFETY: in bounds of a block we own.
        unsafe { std::ptr::write_bytes(b.as_ptr(), 0xAB, 3 * 4096) };
        b.zero_written(3 * 4096);
        assert_eq!(resident_pages(b.as_ptr(), size), 3);
        assert!((0..size).step_by(4093).all(|i| byte(&b, i) == 0));
        // Below the threshold: from the heap, as before.
        let small = OwnedBlock::zeroed(MAPPED_FROM - 1, 64).unwrap();
        assert_eq!(small.capacity(), MAPPED_FROM - 1);
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
        // Mapped: the kernel refuses, and the error says what was asked.
        assert_eq!(OwnedBlock::zeroed(1 << 62, 64).unwrap_err().size, 1 << 62);
    }
}
