//! A pool of aligned byte blocks in size classes, with a byte cap on what it
//! keeps idle, and the lease a holder gets for each block.
//!
//! Invariants:
//! - Class `i` keeps blocks of exactly `classes.size(i)` bytes; a block is
//!   filed by its capacity, so a class only ever holds its own size.
//! - Idle bytes across all classes never exceed `max_idle_bytes`: every
//!   class pool charges the shared [`IdleBudget`] before storing a block.
//! - Requests above the largest class get an exact allocation that is freed
//!   when it comes back (never stored).
//! - With the default classes, a request above `COARSE_FROM` whose class
//!   has nothing idle takes an idle block of a larger class if one has any
//!   (`Tiered::take_larger_from`); the block still belongs to, and returns
//!   to, the class of its size. Explicit classes always serve a request
//!   from its own class.
//! - A zeroing pool never zeroes past what a holder could write, for a
//!   large (mapped) block: a lease exports `n` bytes and no more, and a
//!   block of a zeroing pool is clean when lent, so a large block back from
//!   a lease has its `n` bytes zeroed and is then clean; pages of a mapped
//!   block that no holder wrote are never touched (see `memory`). A block
//!   from [`BlockPool::get`] is its holder's whole, and zeroed whole.
//! - Zeroing follows [`ZeroMode`]; fresh memory is always zero. Zeroing and
//!   the allocation of large blocks go through the caller's [`Offload`], so
//!   a binding can run them without holding an interpreter lock.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::budget::IdleBudget;
use crate::classes::SizeClasses;
use crate::lease::{LeaseError, Leased};
use crate::memory::{AllocError, OwnedBlock, MAPPED_FROM};
use crate::pool::{refuse, Charge, Config, ConfigError, GetError, Hooks, ResetOn};
use crate::sync::Arc;
use crate::tiered::{Filing, Tiered};
use crate::Snapshot;

/// Blocks of at least this many bytes are allocated and zeroed through
/// [`Offload`]: below it the work costs less than leaving the interpreter.
pub(crate) const OFFLOAD_THRESHOLD: usize = 256 << 10;
pub(crate) const DEFAULT_MIN_CLASS: usize = 64;
pub(crate) const DEFAULT_MAX_BLOCK: usize = 16 << 20;
pub(crate) const DEFAULT_MAX_IDLE_BYTES: usize = 64 << 20;
pub(crate) const DEFAULT_ALIGNMENT: usize = 64;
/// The default classes are fine (four per doubling) up to this size and
/// four times apart above it, where a request whose class has nothing idle
/// takes an idle block of a larger class (see [`BlockPool::new`]).
pub(crate) const COARSE_FROM: usize = 256 << 10;
/// Default idle count cap per class: the byte cap over four blocks, clamped.
const DEFAULT_CLASS_IDLE: (usize, usize) = (2, 1024);

/// Why a block could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockError {
    /// The allocator could not provide the memory.
    Alloc(AllocError),
    /// The pool is closed.
    Closed,
}

impl From<AllocError> for BlockError {
    fn from(e: AllocError) -> Self {
        BlockError::Alloc(e)
    }
}

/// When the pool zeroes memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZeroMode {
    /// Never: a reused block holds what its last holder wrote.
    Never,
    /// When a block comes back: idle memory holds no data.
    Release,
    /// When a block is handed out.
    Acquire,
    /// A debugging aid: a block that comes back is filled with
    /// [`POISON`], so a holder that keeps using a released block (or a new
    /// holder that reads before writing) sees a recognisable pattern at once.
    Poison,
}

/// The byte [`ZeroMode::Poison`] fills released blocks with.
pub const POISON: u8 = 0xDB;

/// Runs memory work that may take long. A binding releases its interpreter
/// lock around `f`; plain Rust runs it in place.
pub trait Offload {
    /// Runs `f` (perhaps without a lock the caller holds) and returns its result.
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R;
}

/// Runs everything in place.
pub struct InPlace;

impl Offload for InPlace {
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        f()
    }
}

/// How a [`BlockPool`] is built; `Default` gives a geometric series of
/// classes up to [`BlockConfig::max_block`].
#[derive(Clone, Debug)]
pub struct BlockConfig {
    /// `(size, max_idle)` per class; `None` max_idle picks a default.
    /// `None`: a geometric series up to `max_block`.
    pub classes: Option<Vec<(usize, Option<usize>)>>,
    /// The largest pooled block (`None`: 16 MiB); larger requests are
    /// allocated exactly and never kept.
    pub max_block: Option<usize>,
    /// The most bytes all classes keep idle together.
    pub max_idle_bytes: usize,
    /// When memory is zeroed (or poisoned).
    pub zero: ZeroMode,
    /// Every block's alignment in bytes (a power of two).
    pub alignment: usize,
    /// How long a block may stay idle before it is freed (`None`: for ever).
    pub idle_timeout: Option<Duration>,
    /// Shards per class (`None`: one per CPU).
    pub shards: Option<usize>,
}

impl Default for BlockConfig {
    fn default() -> Self {
        BlockConfig {
            classes: None,
            max_block: None,
            max_idle_bytes: DEFAULT_MAX_IDLE_BYTES,
            zero: ZeroMode::Never,
            alignment: DEFAULT_ALIGNMENT,
            idle_timeout: None,
            shards: None,
        }
    }
}

/// A pool of aligned byte blocks in size classes, one object pool a
/// class, under one idle byte budget; blocks are lent out as [`Leased`].
pub struct BlockPool {
    tiers: Tiered<OwnedBlock>,
    budget: Arc<IdleBudget>,
    alignment: usize,
    zero: ZeroMode,
    max_block: usize,
    /// Blocks of at least this many bytes, back from a lease, are zeroed
    /// there, as far as the lease reached (`usize::MAX`: no zeroing there;
    /// see `zero_lent`).
    zero_lent_from: usize,
    oversize_bytes_out: AtomicUsize,
    oversize_released: AtomicU64,
}

/// Allocates, zeroes and frees blocks of one class for the class's pool.
struct BlockHooks<'a, O: Offload> {
    size: usize,
    alignment: usize,
    zero: ZeroMode,
    offload: &'a O,
}

impl<O: Offload> BlockHooks<'_, O> {
    fn heavy(&self) -> bool {
        self.size >= OFFLOAD_THRESHOLD
    }
}

impl<O: Offload> Hooks<OwnedBlock> for BlockHooks<'_, O> {
    type Error = AllocError;

    fn create(&mut self) -> Result<OwnedBlock, AllocError> {
        let (size, align) = (self.size, self.alignment);
        if self.heavy() {
            self.offload.run(move || OwnedBlock::zeroed(size, align))
        } else {
            OwnedBlock::zeroed(size, align)
        }
    }

    /// Inlined for its common case, a pool that never zeroes: there a
    /// put called it out of line for nothing (18 instructions, and the
    /// block spilled to memory around the call).
    #[inline(always)]
    fn reset(&mut self, block: &OwnedBlock) -> Result<(), AllocError> {
        if self.zero != ZeroMode::Never {
            self.clean(block);
        }
        Ok(())
    }

    fn destroy(&mut self, block: OwnedBlock) {
        if self.heavy() {
            self.offload.run(move || drop(block));
        }
    }

    fn identity(&self, block: &OwnedBlock) -> usize {
        block.as_ptr() as usize
    }

    fn duplicate(&mut self, _: &OwnedBlock) -> OwnedBlock {
        unreachable!("block pools are never checked: the lease guards returns")
    }
}

impl<O: Offload> BlockHooks<'_, O> {
    /// `reset` of a pool that zeroes or poisons.
    #[inline(never)]
    fn clean(&self, block: &OwnedBlock) {
        match self.zero {
            ZeroMode::Never => {}
            ZeroMode::Release | ZeroMode::Acquire => {
                if self.heavy() && !block.is_clean() {
                    self.offload.run(|| block.zero());
                } else {
                    block.zero();
                }
            }
            ZeroMode::Poison => {
                if self.heavy() {
                    self.offload.run(|| block.fill(POISON));
                } else {
                    block.fill(POISON);
                }
            }
        }
    }
}

/// The size classes of `config`, each class's idle cap (`None`: the
/// default for its size), and whether they are the default coarse classes.
fn classes_of(
    config: &BlockConfig,
) -> Result<(SizeClasses, Vec<Option<usize>>, bool), ConfigError> {
    match &config.classes {
        // Large blocks are few and each is worth a lot of cache (issue
        // 13): coarse classes above COARSE_FROM, and a request there
        // takes a larger idle block before it makes a new one, so a
        // stream of messages of mixed sizes reuses the same few warm
        // blocks. Pages a holder never writes are never made resident
        // (`memory`), so a coarse class costs address space, not memory.
        None => {
            let max = config.max_block.unwrap_or(DEFAULT_MAX_BLOCK);
            let classes =
                SizeClasses::geometric_coarse(DEFAULT_MIN_CLASS.min(max), COARSE_FROM, max);
            let caps = vec![None; classes.len()];
            Ok((classes, caps, true))
        }
        Some(pairs) => {
            let classes = SizeClasses::new(pairs.iter().map(|p| p.0).collect(), "classes")?;
            // With explicit classes the largest one is the largest
            // pooled size: a different max_block could only mislead.
            if let Some(max) = config.max_block {
                if max != classes.max() {
                    return Err(refuse(
                        "max_block",
                        format!(
                            "max_block ({max}) must equal the largest class ({}) when \
                             classes are given; add a class of {max} bytes instead",
                            classes.max()
                        ),
                    ));
                }
            }
            let caps = classes
                .sizes()
                .iter()
                .map(|s| pairs.iter().find(|p| p.0 == *s).and_then(|p| p.1))
                .collect::<Vec<_>>();
            Ok((classes, caps, false))
        }
    }
}

impl BlockPool {
    /// Builds a pool, or names the setting of `config` it refuses.
    pub fn new(config: BlockConfig) -> Result<Self, ConfigError> {
        let a = config.alignment;
        if !a.is_power_of_two() || a > 4096 {
            return Err(refuse(
                "alignment",
                format!("alignment must be a power of two up to 4096, got {a}"),
            ));
        }
        if config.max_block == Some(0) {
            return Err(refuse(
                "max_block",
                "max_block must be positive, got 0".into(),
            ));
        }
        let (classes, caps, coarse) = classes_of(&config)?;
        let budget = Arc::new(IdleBudget::new(config.max_idle_bytes));
        let reset_on = match config.zero {
            ZeroMode::Acquire => ResetOn::Get,
            _ => ResetOn::Put,
        };
        let sizes = classes.sizes().to_vec();
        let max_idle_bytes = config.max_idle_bytes;
        let tiers = Tiered::new(classes, Filing::Exact, false, |size| {
            let i = sizes.iter().position(|&s| s == size).expect("a class size");
            let default =
                (max_idle_bytes / size / 4).clamp(DEFAULT_CLASS_IDLE.0, DEFAULT_CLASS_IDLE.1);
            Config {
                max_idle: Some(caps[i].unwrap_or(default)),
                shards: config.shards,
                idle_timeout: config.idle_timeout,
                reset_on,
                charge: Some(Charge {
                    budget: Arc::clone(&budget),
                    weight: size,
                }),
                ..Config::default()
            }
        })?;
        // The default classes above COARSE_FROM take larger idle blocks.
        let first_coarse = tiers
            .classes()
            .sizes()
            .partition_point(|&s| s <= COARSE_FROM);
        let tiers = if coarse {
            tiers.take_larger_from(first_coarse)
        } else {
            tiers
        };
        let max_block = config.max_block.unwrap_or_else(|| tiers.classes().max());
        Ok(BlockPool {
            tiers,
            budget,
            alignment: a,
            zero: config.zero,
            max_block,
            zero_lent_from: match config.zero {
                ZeroMode::Release | ZeroMode::Acquire => MAPPED_FROM,
                ZeroMode::Never | ZeroMode::Poison => usize::MAX,
            },
            oversize_bytes_out: AtomicUsize::new(0),
            oversize_released: AtomicU64::new(0),
        })
    }

    fn hooks<'a, O: Offload>(&self, size: usize, offload: &'a O) -> BlockHooks<'a, O> {
        BlockHooks {
            size,
            alignment: self.alignment,
            zero: self.zero,
            offload,
        }
    }

    /// A block of at least `n` bytes. With `zeroed`, its first `n` bytes are
    /// zero whatever the zero mode.
    pub fn get<O: Offload>(
        &self,
        n: usize,
        zeroed: bool,
        offload: &O,
    ) -> Result<OwnedBlock, BlockError> {
        self.get_in_class(n, zeroed, offload)
            .map(|(block, _)| block)
    }

    /// [`BlockPool::get`], with the block's class (`None`: oversize).
    #[inline(always)]
    fn get_in_class<O: Offload>(
        &self,
        n: usize,
        zeroed: bool,
        offload: &O,
    ) -> Result<(OwnedBlock, Option<usize>), BlockError> {
        let (block, class) = self
            .tiers
            .get(n, |size| self.hooks(size, offload))
            .map_err(|e| match e {
                GetError::Hook(e) => BlockError::Alloc(e),
                GetError::Closed => BlockError::Closed,
                // Unbounded and unchecked: no other error can happen.
                other => unreachable!("a block class pool failed with {other:?}"),
            })?;
        if class.is_none() {
            self.oversize_bytes_out
                .fetch_add(block.capacity(), Ordering::Relaxed);
        }
        if zeroed && !block.is_clean() {
            if n >= OFFLOAD_THRESHOLD {
                offload.run(|| block.zero_prefix(n));
            } else {
                block.zero_prefix(n);
            }
        }
        block.mark_dirty();
        Ok((block, class))
    }

    /// Takes a block back: files it by capacity, or frees it.
    pub fn put<O: Offload>(&self, block: OwnedBlock, offload: &O) {
        let capacity = block.capacity();
        // Unchecked and infallible: nothing to report.
        let received = self
            .tiers
            .put(block, capacity, |size| self.hooks(size, offload));
        if let Ok(None) = received {
            // An oversize block, freed. Saturating: a block this pool did
            // not hand out (possible from Rust, not from Python) must not
            // wrap the gauge.
            let _ =
                self.oversize_bytes_out
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |out| {
                        Some(out.saturating_sub(capacity))
                    });
            self.oversize_released.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Frees expired idle blocks, then the oldest until at most `keep_bytes`
    /// stay idle. Returns the bytes freed.
    pub fn trim<O: Offload>(&self, keep_bytes: usize, offload: &O) -> usize {
        // Byte sums saturate: they count memory that exists, so they cannot
        // really overflow, but a wrong count must not wrap.
        let mut freed = 0usize;
        // Expired blocks first, in every class.
        for (size, pool) in self.tiers.used() {
            let blocks = pool.trim(&mut self.hooks(size, offload), usize::MAX);
            freed = freed.saturating_add(size.saturating_mul(blocks));
        }
        // Then the largest classes first: the most memory for the least churn.
        let used: Vec<_> = self.tiers.used().collect();
        for (size, pool) in used.into_iter().rev() {
            let idle_bytes = self.budget.used();
            if idle_bytes <= keep_bytes {
                break;
            }
            let excess_blocks = (idle_bytes - keep_bytes).div_ceil(size);
            let keep = pool.idle().saturating_sub(excess_blocks);
            let blocks = pool.trim(&mut self.hooks(size, offload), keep);
            freed = freed.saturating_add(size.saturating_mul(blocks));
        }
        freed
    }

    /// Frees every idle block; from now on blocks that come back are freed
    /// and `get` is refused.
    pub fn close<O: Offload>(&self, offload: &O) -> usize {
        self.tiers
            .close(|size| self.hooks(size, offload))
            .into_iter()
            .map(|(size, destroyed)| size.saturating_mul(destroyed))
            .fold(0, usize::saturating_add)
    }

    /// Whether [`BlockPool::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.tiers.is_closed()
    }

    /// The size classes.
    pub fn classes(&self) -> &SizeClasses {
        self.tiers.classes()
    }

    /// Idle blocks over all classes.
    pub fn idle_blocks(&self) -> usize {
        self.tiers.idle()
    }

    /// The largest pooled block size.
    pub fn max_block(&self) -> usize {
        self.max_block
    }

    /// The idle byte budget shared by the classes.
    pub fn max_idle_bytes(&self) -> usize {
        self.budget.limit()
    }

    /// Every block's alignment in bytes.
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// When memory is zeroed.
    pub fn zero(&self) -> ZeroMode {
        self.zero
    }

    /// Counters and byte gauges, in total and per class used.
    pub fn stats(&self) -> BlockStats {
        let classes: Vec<ClassStats> = self
            .tiers
            .used()
            .map(|(size, pool)| ClassStats {
                size,
                max_idle: pool.max_idle(),
                counts: pool.stats(),
            })
            .collect();
        // Saturating: the counters are read one by one while other threads
        // move, so a snapshot can be off by a few blocks, and a gauge must
        // not wrap because of it.
        let in_use_bytes = classes
            .iter()
            .map(|c| {
                let blocks = usize::try_from(c.counts.in_use).unwrap_or(usize::MAX);
                c.size.saturating_mul(blocks)
            })
            .fold(0, usize::saturating_add);
        BlockStats {
            totals: self.tiers.stats(),
            bytes_idle: self.budget.used(),
            bytes_in_use: in_use_bytes
                .saturating_add(self.oversize_bytes_out.load(Ordering::Relaxed)),
            oversize: self.tiers.oversize(),
            oversize_released: self.oversize_released.load(Ordering::Relaxed),
            classes,
        }
    }
}

/// Leases: a block handed to a holder, and its way back (see `lease` for
/// why an exported block comes back only when its lease ends).
impl BlockPool {
    /// A leased block of exactly `n` usable bytes (see [`BlockPool::get`]).
    pub fn lease<O: Offload>(
        &self,
        n: usize,
        zeroed: bool,
        offload: &O,
    ) -> Result<Leased, BlockError> {
        let (block, class) = self.get_in_class(n, zeroed, offload)?;
        Ok(Leased::in_class(block, n, class.unwrap_or(usize::MAX)))
    }

    /// The holder releases the block; refused while it is exported. A block
    /// never exported goes back now; one exported at some point keeps its
    /// memory until [`BlockPool::finish`] (with [`ZeroMode::Poison`] the
    /// memory is poisoned now, so a consumer that kept its address reads
    /// [`POISON`]).
    // Always inlined: out of line, its frame and the block's move to
    // `put_leased` cost a `Block.release()` 11 instructions.
    #[inline(always)]
    pub fn release<O: Offload>(&self, leased: &Leased, offload: &O) -> Result<(), LeaseError> {
        let block = leased.release()?;
        self.settle(leased, block, offload);
        Ok(())
    }

    /// The holder lets go (the end of a `with` block), also while exports
    /// are alive: they keep the memory, and no new export can start.
    pub fn release_or_defer<O: Offload>(
        &self,
        leased: &Leased,
        offload: &O,
    ) -> Result<(), LeaseError> {
        let block = leased.release_or_defer()?;
        self.settle(leased, block, offload);
        Ok(())
    }

    fn settle<O: Offload>(&self, leased: &Leased, block: Option<OwnedBlock>, offload: &O) {
        match block {
            Some(block) => self.put_leased(leased, block, offload),
            None if self.zero == ZeroMode::Poison => {
                if leased.capacity() >= OFFLOAD_THRESHOLD {
                    offload.run(|| leased.poison(POISON));
                } else {
                    leased.poison(POISON);
                }
            }
            None => {}
        }
    }

    /// The end of a lease: memory it still holds goes back to the pool.
    /// Returns whether the holder had released it, or `None` if the memory
    /// came back earlier.
    pub fn finish<O: Offload>(&self, leased: &mut Leased, offload: &O) -> Option<bool> {
        let (block, released) = leased.finish()?;
        self.put_leased(leased, block, offload);
        Some(released)
    }

    /// Takes back the block of `leased`.
    #[inline]
    fn put_leased<O: Offload>(&self, leased: &Leased, block: OwnedBlock, offload: &O) {
        if block.capacity() >= self.zero_lent_from {
            self.zero_lent(leased.len(), &block, offload);
        }
        // The class the lease was lent from: the block goes back there
        // without its size being looked up again (`put` otherwise).
        let class = leased.class();
        if self.tiers.files_in(class, block.capacity()) {
            // Unchecked and infallible: nothing to report.
            let _ = self
                .tiers
                .put_filed(block, class, |size| self.hooks(size, offload));
        } else {
            self.put_unfiled(block, offload);
        }
    }

    /// `put`, out of line: an oversize block, or a lease without a class.
    #[cold]
    #[inline(never)]
    fn put_unfiled<O: Offload>(&self, block: OwnedBlock, offload: &O) {
        self.put(block, offload);
    }

    /// A large block back from a lease of `len` bytes, in a pool that
    /// zeroes: zeroed now, those bytes only. A lease exports `len` bytes
    /// and no more, and a block of a zeroing pool was clean when it was
    /// lent (new, or zeroed when it came back), so nothing past them can
    /// have been written; zeroing the whole block (as `reset` would) would
    /// make every page of a mapped block resident (issue 13). It is then
    /// clean, and `reset` finds nothing to do. (With `zero="acquire"` the
    /// zeroing moves from the next hand-out to now: the block is as zero
    /// when handed out, and idle memory holds no data.)
    #[cold]
    #[inline(never)]
    fn zero_lent<O: Offload>(&self, len: usize, block: &OwnedBlock, offload: &O) {
        // An oversize block is freed, not kept: nothing to zero.
        if block.capacity() <= self.max_block && !block.is_clean() {
            if len >= OFFLOAD_THRESHOLD {
                offload.run(|| block.zero_written(len));
            } else {
                block.zero_written(len);
            }
        }
    }
}

/// One class's counters.
#[derive(Clone, Debug)]
pub struct ClassStats {
    /// The class's block size in bytes.
    pub size: usize,
    /// The most blocks the class keeps idle.
    pub max_idle: usize,
    /// The class pool's counters.
    pub counts: Snapshot,
}

/// What [`BlockPool::stats`] reports.
#[derive(Clone, Debug)]
pub struct BlockStats {
    /// Counters merged over all classes and oversize blocks.
    pub totals: Snapshot,
    /// Bytes held by idle blocks.
    pub bytes_idle: usize,
    /// Bytes held by blocks handed out.
    pub bytes_in_use: usize,
    /// Requests above the largest class (exact, unpooled allocations).
    pub oversize: u64,
    /// Oversize blocks given back (and freed).
    pub oversize_released: u64,
    /// Classes that have been used, smallest first.
    pub classes: Vec<ClassStats>,
}

pub mod spares;

#[cfg(test)]
mod tests;
