//! loom models of the hand-written concurrent protocols.
//!
//! Built only with `RUSTFLAGS="--cfg loom"` (see `scripts/loom` and
//! `docs/rust-verification.md`): [`crate::sync`] then swaps every atomic,
//! lock, condition variable, `Arc`, thread and the shards' queue for loom's
//! instrumented ones, so these models drive the real code of `lease`,
//! `limit`, `shards`, `counters`, `budget`, `ledger`, `pool` and `tiered`. loom runs
//! each model under every interleaving (and every value a weak load may
//! return) within the preemption bound, and fails a model on a failed
//! assertion, a deadlock (a lost wake-up leaves a thread blocked for ever),
//! an unsynchronised access to a loom cell, or a leaked `Arc`.
//!
//! Each module's header says what its models prove.

mod blocks;
mod budget;
mod buffer_lease;
mod lease;
mod lent;
mod limit;
mod pool;
mod queue;
mod shards;
mod sizing;
mod tiered;

use std::sync::atomic::{AtomicUsize, Ordering};

use loom::model::Builder;

/// How far a model's search goes: every interleaving, or those with at most
/// this many preemptions (the bugs that need more are rare; the cost grows
/// steeply with the bound).
#[derive(Clone, Copy)]
enum Bound {
    Exhaustive,
    Preemptions(usize),
}

/// Runs `f` on a new loom thread with its own reference to `shared`. (loom
/// runs every thread on one OS thread: its `spawn` asks no `Send`.)
fn spawn_with<T, R>(
    shared: &loom::sync::Arc<T>,
    f: impl FnOnce(loom::sync::Arc<T>) -> R + 'static,
) -> loom::thread::JoinHandle<R>
where
    T: 'static,
    R: 'static,
{
    let shared = loom::sync::Arc::clone(shared);
    loom::thread::spawn(move || f(shared))
}

/// Checks `model` exhaustively on an item `lent` makes (with the count of
/// times its memory came back): once the model has ended, with every
/// reference to the item gone, the memory came back exactly once.
fn check_returned_once<T: 'static>(
    lent: fn() -> (
        loom::sync::Arc<T>,
        loom::sync::Arc<loom::sync::atomic::AtomicUsize>,
    ),
    model: impl Fn(loom::sync::Arc<T>) + Sync + Send + 'static,
) {
    check(Bound::Exhaustive, move || {
        let (item, returned) = lent();
        model(item);
        assert_eq!(returned.load(Ordering::Relaxed), 1);
    });
}

/// Checks `f` under loom within `bound`, or with at most
/// `LOOM_MAX_PREEMPTIONS` preemptions when that is set (to search deeper
/// by hand), and reports how many executions loom explored (shown with
/// `--nocapture`).
fn check(bound: Bound, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = Builder::new();
    // loom's default (1,000 branches per execution) is too few for a model
    // that reads a family's merged counters at its end: every counter block
    // of every class is a branch. The bound is on the path's length, not on
    // the interleavings explored, so raising it costs nothing elsewhere.
    builder.max_branches = builder.max_branches.max(20_000);
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = match bound {
            Bound::Exhaustive => None,
            Bound::Preemptions(n) => Some(n),
        };
    }
    let bound = builder
        .preemption_bound
        .map_or("none (exhaustive)".to_owned(), |n| n.to_string());
    // A plain std counter: it counts executions, it is not part of a model.
    let executions = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&executions);
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    let name = std::thread::current().name().unwrap_or("?").to_owned();
    eprintln!(
        "{name}: {} executions, preemption bound {bound}",
        executions.load(Ordering::Relaxed)
    );
}
