//! The stand-in for crossbeam's `ArrayQueue` under loom (`crate::sync`): a
//! check of the stand-in itself, so that the other models rest on a queue
//! that keeps what it is given.
//!
//! For every interleaving within the bound: items pushed by two threads into
//! a queue of one slot and popped by a third are each popped once or
//! refused, never lost or duplicated; the queue never holds more than its
//! capacity; and the slots' loom cells report no unsynchronised access (the
//! slot states order each write before its read, and each read before the
//! next write).

use loom::sync::Arc;

use super::Bound::Preemptions;
use super::{check, spawn_with};
use crate::sync::ArrayQueue;

/// The consumer is spawned first and the main thread is a producer. loom
/// 0.7 backtracks only from the last access to each object, so when a
/// thread's first access is a load that follows another thread's loads,
/// loom may never try it the other way round (with the consumer on the main
/// thread, popping before the producers ran, loom explored one execution).
/// This way the first execution already has a pop after a push, and loom
/// backtracks from there.
#[test]
fn two_producers_one_consumer() {
    check(Preemptions(4), || {
        let q = Arc::new(ArrayQueue::new(1));
        let consumer = spawn_with(&q, move |q| [q.pop(), q.pop()]);
        let producer = spawn_with(&q, move |q| q.push(2).err());
        let mut refused: Vec<_> = q.push(1).err().into_iter().collect();
        refused.extend(producer.join().unwrap());
        let mut popped: Vec<_> = consumer.join().unwrap().into_iter().flatten().collect();
        assert!(q.len() <= q.capacity());
        let left = q.len();
        let before = popped.len();
        popped.extend(std::iter::from_fn(|| q.pop()));
        assert_eq!(popped.len() - before, left);
        popped.extend(refused);
        popped.sort_unstable();
        assert_eq!(popped, [1, 2]);
        assert_eq!(q.len(), 0);
    });
}
