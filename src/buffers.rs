//! A pool of growable byte buffers (`Vec<u8>`) that calibrates what it keeps.
//!
//! Buffers come back cleared (length 0) with their capacity, so the next
//! holder writes without reallocating. The [`Calibrator`] picks the capacity
//! of new buffers and refuses to keep buffers far larger than recent use; a
//! hard `max_capacity` applies on top.
//!
//! Invariants: a buffer is idle in the inner [`Pool`] or owned by exactly one
//! holder; idle buffers have length 0.

use std::convert::Infallible;

use crate::buffer_lease::{BufferError, LeasedBuffer};
use crate::calibration::Calibrator;
use crate::pool::{Config, ConfigError, Hooks, Pool};
use crate::Snapshot;

/// Returns between recalibrations.
pub(crate) const CALIBRATION_WINDOW: usize = 1000;
/// Capacity of new buffers before the first calibration.
pub(crate) const INITIAL_CAPACITY: usize = 4096;
/// Buffers above this capacity are never kept, unless configured otherwise.
pub(crate) const DEFAULT_MAX_CAPACITY: usize = 16 << 20;

/// A pool of growable byte buffers (`Vec<u8>`) that learns the sizes of
/// recent use: new buffers get the typical capacity, and buffers far
/// larger than recent use are not kept.
pub struct BufferPool {
    pool: Pool<Vec<u8>>,
    calibrator: Calibrator,
    max_capacity: usize,
}

struct BufferHooks<'a> {
    calibrator: &'a Calibrator,
    max_capacity: usize,
}

impl Hooks<Vec<u8>> for BufferHooks<'_> {
    type Error = Infallible;

    fn create(&mut self) -> Result<Vec<u8>, Infallible> {
        // Room for a typical use if the allocator has it; else an empty
        // buffer, whose first write then fails with an error of its own
        // (`Vec::with_capacity` would abort the process instead).
        let mut buf = Vec::new();
        let _ = buf.try_reserve_exact(self.calibrator.typical().min(self.max_capacity));
        Ok(buf)
    }

    fn reset(&mut self, buf: &Vec<u8>) -> Result<(), Infallible> {
        // Cleared in `put`, where the buffer is still owned mutably.
        debug_assert!(buf.is_empty());
        Ok(())
    }

    fn keep(&mut self, buf: &Vec<u8>) -> bool {
        buf.capacity() <= self.max_capacity && self.calibrator.keeps(buf.capacity())
    }

    fn identity(&self, buf: &Vec<u8>) -> usize {
        buf.as_ptr() as usize
    }

    fn duplicate(&mut self, _: &Vec<u8>) -> Vec<u8> {
        unreachable!("buffer pools are never checked: a buffer has one owner")
    }
}

impl BufferPool {
    /// Builds a pool; buffers above `max_capacity` bytes (`None`: 16 MiB) are
    /// never kept.
    pub fn new(config: Config, max_capacity: Option<usize>) -> Result<Self, ConfigError> {
        if config.max_size.is_some() || config.checked {
            return Err(ConfigError {
                field: "max_size",
                message: "buffer pools are unbounded and unchecked".into(),
            });
        }
        Ok(BufferPool {
            pool: Pool::new(config)?,
            calibrator: Calibrator::new(CALIBRATION_WINDOW, INITIAL_CAPACITY),
            max_capacity: max_capacity.unwrap_or(DEFAULT_MAX_CAPACITY),
        })
    }

    fn hooks(&self) -> BufferHooks<'_> {
        BufferHooks {
            calibrator: &self.calibrator,
            max_capacity: self.max_capacity,
        }
    }

    /// An empty buffer with room for a typical use.
    pub fn get(&self) -> Result<Vec<u8>, crate::GetError<Infallible>> {
        self.pool.get(&mut self.hooks(), None)
    }

    /// Takes a buffer back: learns from its length, clears it, keeps it if
    /// its capacity is in line with recent use.
    pub fn put(&self, mut buf: Vec<u8>) {
        self.calibrator.record(buf.len());
        buf.clear();
        // Unchecked and infallible: nothing to report.
        let _ = self.pool.put(&mut self.hooks(), buf);
    }

    /// The pool's counters.
    pub fn stats(&self) -> Snapshot {
        self.pool.stats()
    }

    /// Idle buffers now.
    pub fn idle(&self) -> usize {
        self.pool.idle()
    }

    /// Idle bytes (capacity) are not tracked per buffer; see [`BufferPool::trim`].
    pub fn trim(&self, keep: usize) -> usize {
        self.pool.trim(&mut self.hooks(), keep)
    }

    /// Closes the pool (see [`Pool::close`](crate::Pool::close)); returns how many idle buffers it freed.
    pub fn close(&self) -> usize {
        self.pool.close(&mut self.hooks())
    }

    /// Whether the pool is closed.
    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }

    /// What the pool learned of recent sizes.
    pub fn calibrator(&self) -> &Calibrator {
        &self.calibrator
    }

    /// The largest capacity a kept buffer may have.
    pub fn max_capacity(&self) -> usize {
        self.max_capacity
    }

    /// The most buffers kept idle.
    pub fn max_idle(&self) -> usize {
        self.pool.max_idle()
    }
}

/// Leases: a buffer handed to a holder, and its way back (see
/// `buffer_lease` for why an exported buffer comes back only when its lease
/// ends).
impl BufferPool {
    /// A leased, empty buffer.
    pub fn lease(&self) -> Result<LeasedBuffer, crate::GetError<Infallible>> {
        self.get().map(LeasedBuffer::new)
    }

    /// The holder releases the buffer; refused while it is exported. A
    /// buffer never exported comes back now, one exported at some point in
    /// [`BufferPool::finish`].
    pub fn release(&self, leased: &LeasedBuffer) -> Result<(), BufferError> {
        if let Some(data) = leased.release()? {
            self.put(data);
        }
        Ok(())
    }

    /// The holder lets go (the end of a `with` block), also while exports
    /// are alive.
    pub fn release_or_defer(&self, leased: &LeasedBuffer) -> Result<(), BufferError> {
        if let Some(data) = leased.release_or_defer()? {
            self.put(data);
        }
        Ok(())
    }

    /// The end of a lease: bytes it still holds come back. Returns their
    /// length and whether the holder had released them, or `None` if they
    /// came back earlier.
    pub fn finish(&self, leased: &mut LeasedBuffer) -> Option<(usize, bool)> {
        let (data, released) = leased.finish()?;
        let len = data.len();
        self.put(data);
        Some((len, released))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_with_their_capacity() {
        let p = BufferPool::new(Config::default(), None).unwrap();
        let mut b = p.get().unwrap();
        assert_eq!(b.capacity(), INITIAL_CAPACITY);
        b.extend_from_slice(&[7; 10_000]);
        let cap = b.capacity();
        p.put(b);
        let b = p.get().unwrap();
        assert!(b.is_empty());
        assert_eq!(b.capacity(), cap);
    }

    #[test]
    fn calibration_bounds_what_is_kept() {
        let p = BufferPool::new(
            Config {
                shards: Some(1),
                ..Config::default()
            },
            None,
        )
        .unwrap();
        // One huge use among many small ones.
        let mut huge = Vec::with_capacity(8 << 20);
        huge.resize(8 << 20, 1);
        p.put(huge);
        for _ in 0..CALIBRATION_WINDOW {
            let mut b = p.get().unwrap();
            b.extend_from_slice(&[1; 1000]);
            p.put(b);
        }
        // Calibrated now: the next huge buffer is dropped, not kept.
        let mut huge = Vec::with_capacity(8 << 20);
        huge.resize(8 << 20, 1);
        let dropped = p.stats().dropped;
        p.put(huge);
        assert_eq!(p.stats().dropped, dropped + 1);
        assert_eq!(p.calibrator().typical(), 1024);
    }

    /// A capacity no allocator can give (a pool configured with a huge
    /// `max_capacity` that learned a huge typical size) makes an empty
    /// buffer instead of aborting the process.
    #[test]
    fn an_impossible_typical_capacity_gives_an_empty_buffer() {
        let mut hooks = BufferHooks {
            calibrator: &Calibrator::new(1, usize::MAX),
            max_capacity: usize::MAX,
        };
        let buf = hooks.create().unwrap();
        assert_eq!((buf.len(), buf.capacity()), (0, 0));
    }

    #[test]
    fn a_leased_buffer_comes_back_at_release_or_at_its_end() {
        let p = BufferPool::new(Config::default(), None).unwrap();
        let plain = p.lease().unwrap();
        plain.append(b"abc").unwrap();
        p.release(&plain).unwrap();
        assert_eq!((p.stats().in_use, p.idle()), (0, 1));
        let mut viewed = p.lease().unwrap();
        viewed.export().unwrap();
        assert_eq!(p.release(&viewed), Err(BufferError::Exported(1)));
        viewed.unexport();
        p.release_or_defer(&viewed).unwrap();
        assert_eq!((p.stats().in_use, p.idle()), (1, 0));
        assert_eq!(p.finish(&mut viewed), Some((0, true)));
        assert_eq!(p.finish(&mut viewed), None);
        assert_eq!((p.stats().in_use, p.idle()), (0, 1));
    }

    #[test]
    fn hard_cap_applies_before_calibration() {
        let p = BufferPool::new(Config::default(), Some(1 << 20)).unwrap();
        p.put(Vec::with_capacity(2 << 20));
        assert_eq!(p.stats().dropped, 1);
        assert_eq!(p.idle(), 0);
    }
}
