//! After `fork()`: the child keeps exactly the waiters of the thread that
//! forked (the only thread that exists there) and forgets the others'.
//!
//! The fork log is process-wide statics, always std's atomics (outside what
//! the loom models cover). Written only by [`note_fork`], in a child process
//! just forked, where no other thread exists; read by every queue the next
//! time it is locked (`Limit::lock_queue`).

use super::Waiter;
use crate::shards::thread_index;

static FORK_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// 1 + the [`thread_index`] of the thread that made the last fork.
static FORKER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// The generation of that thread's first fork in its unbroken run of forks.
static FORKER_SINCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Tells every limit that this process is a child just forked by the
/// calling thread. Only that thread exists in the child: waiters of other
/// threads are forgotten the next time each queue is used (a `put` in the
/// child is never granted to a thread that will not take it), and the
/// caller's own waiters (an event loop's tasks, if it forked from a
/// coroutine) stay queued and are served. Call it right after the fork, in
/// the child, from the thread that forked (the Python binding registers it
/// with `os.register_at_fork`).
pub fn note_fork() {
    use std::sync::atomic::Ordering::SeqCst;
    let me = thread_index() + 1;
    let generation = FORK_GENERATION.fetch_add(1, SeqCst) + 1;
    if FORKER.swap(me, SeqCst) != me {
        FORKER_SINCE.store(generation, SeqCst);
    }
}

pub(super) fn fork_generation() -> u64 {
    FORK_GENERATION.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether `waiter`'s thread exists in this process: it queued after the
/// last fork, or it made every fork since it queued.
pub(super) fn survives_forks<I>(waiter: &Waiter<I>, generation: u64) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    waiter.generation == generation
        || (FORKER.load(Relaxed) == waiter.thread + 1
            && waiter.generation + 1 >= FORKER_SINCE.load(Relaxed))
}
