//! After `fork()`, a child forgets the waiters queued in the parent. In its
//! own test binary: `note_fork` is process-wide and would disturb other
//! tests' waiters.

use shardpool::limit::{note_fork, Enqueued, Limit};

#[test]
fn waiters_from_before_a_fork_are_forgotten() {
    let limit: Limit<u32> = Limit::new(1);
    assert!(limit.try_reserve());
    let ghost = match limit.enqueue(|| None) {
        Enqueued::Queued(waiter) => waiter,
        _ => panic!("expected to queue"),
    };
    assert_eq!(limit.waiting(), 1);
    note_fork();
    // The item is not granted to the parent's thread: it comes back.
    assert_eq!(limit.offer(7), Err(7));
    assert_eq!(limit.waiting(), 0);
    assert!(ghost.take().is_none());
    // Waiters queued in the child are served as usual.
    let waiter = match limit.enqueue(|| None) {
        Enqueued::Queued(waiter) => waiter,
        _ => panic!("expected to queue"),
    };
    assert_eq!(limit.offer(8), Ok(()));
    assert!(waiter.take().is_some());
}
