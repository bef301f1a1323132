//! After `fork()`, a child keeps the waiters of the thread that forked and
//! forgets the others'. In its own test binary: `note_fork` is
//! process-wide and would disturb other tests' waiters.

use std::sync::Arc;
use std::time::Duration;

use shardpool::{note_fork, Enqueued, Grant, Limit, NoStore, Offered, Outcome, Waiter};

fn queue(limit: &Limit<u32>) -> Arc<Waiter<u32>> {
    match limit.enqueue(&NoStore) {
        Enqueued::Queued(waiter) => waiter,
        _ => panic!("expected to queue"),
    }
}

/// Queues on `limit` from a thread of its own (which then ends, as the
/// parent's other threads do not exist in a child).
fn queue_elsewhere(limit: &Arc<Limit<u32>>) -> Arc<Waiter<u32>> {
    let limit = Arc::clone(limit);
    std::thread::spawn(move || queue(&limit)).join().unwrap()
}

// One test: `note_fork` marks the whole process, and the tests of one
// binary run in parallel threads.
#[test]
fn a_fork_keeps_the_forking_threads_waiters_and_forgets_the_others() {
    // Hand-off mode: each offer goes to the first surviving waiter (in
    // normal mode it would wake that waiter to compete, the same choice).
    let limit: Arc<Limit<u32>> = Arc::new(Limit::new(1).handing_off_after(Duration::ZERO));
    assert!(limit.try_reserve());
    let ghost = queue_elsewhere(&limit);
    let mine = queue(&limit); // an event loop's task, on the forking thread
    let other_ghost = queue_elsewhere(&limit);
    assert_eq!(limit.waiting(), 3);
    note_fork(); // "this thread forked; we are the child"
                 // The parent's other threads are forgotten; this thread's waiter is
                 // served, although it queued after one of them.
    assert_eq!(limit.offer(7, &NoStore), Offered::Taken);
    assert_eq!(mine.take(), Some(Outcome::Granted(Grant::Item(7))));
    assert_eq!(limit.waiting(), 0);
    assert!(ghost.take().is_none() && other_ghost.take().is_none());
    assert_eq!(
        limit.offer(8, &NoStore),
        Offered::Kept(8),
        "nobody else waits here"
    );

    // Waiters queued in the child are served as usual; a second fork by
    // this thread keeps its waiters again.
    let again = queue(&limit);
    note_fork();
    assert_eq!(limit.offer(9, &NoStore), Offered::Taken);
    assert_eq!(again.take(), Some(Outcome::Granted(Grant::Item(9))));

    // A fork made by another thread (a grandchild forked from a thread of
    // the child): this thread does not exist there, its waiter is gone.
    let orphan = queue(&limit);
    std::thread::spawn(note_fork).join().unwrap();
    assert_eq!(limit.offer(10, &NoStore), Offered::Kept(10));
    assert_eq!(limit.waiting(), 0);
    assert!(orphan.take().is_none());
}
