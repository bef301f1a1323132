//! Which objects the blocks running on each thread hold (a binding's
//! `with pool.borrow() as obj:`), so that a discard of one of them from any
//! thread makes the block's end not give it back again. Python-free: a key
//! is two addresses, the pool's and the object's, which the caller keeps
//! alive while they are listed (the block holds both).
//!
//! Invariants:
//! - Each thread lists the objects lent to the blocks entered on it. An
//!   entry is added when a block gets its object and removed when the block
//!   exits, found by its id (unique among registered lists: the list's
//!   serial, then a count), under the list's own lock: uncontended except
//!   while a discard looks through it. An exit whose entry was not marked discarded also
//!   records, in the same step, its key as the list's *returning* key until
//!   the block has given the object back ([`Returning`]); clearing it is
//!   one store, without the lock (a block nested in that give-back, say in
//!   a reset hook, records its own key and puts the outer one back, under
//!   the lock).
//! - A block may exit on another thread than the one that entered it (a
//!   generator holding it, resumed by a thread pool). Its exit finds the
//!   entry by id on the entering thread's list, and in the same step under
//!   that list's lock removes it and, unless it was marked, records the
//!   key there as given back by the exiting thread (`foreign`) until the
//!   give-back is done: so a discard sees the entry or the give-back, as
//!   for an exit on the entering thread. (Looking on the exiting thread's
//!   list only, as this module did before, left the entry behind: a later
//!   discard of the same pool and address marked it, and a later block of
//!   the same key that exited on that thread took the stale mark for its
//!   own and never gave its object back. Found in review; the test is
//!   `test_a_block_exited_on_another_thread_leaves_no_entry_to_strand_a_later_one`,
//!   the loom model `lent::discard_racing_an_exit_on_another_thread_*`.) A
//!   list whose thread is gone stays registered while a block entered
//!   there runs on.
//! - A discard marks every entry of its key, on every thread's list,
//!   *before* the pool destroys the object, and unmarks them if the pool
//!   refuses (the object was not out). Marks are counted per entry, so a
//!   refused discard racing one that destroys the object takes back only
//!   its own mark (with a flag, its unmarking erased the other's; the loom
//!   model `lent::two_discards_*` found it). So an exit that starts after the
//!   discard began sees the mark and does nothing more. A discard that
//!   finds its key being given back does not mark, so the object is never
//!   both given back and destroyed. If the give-back is the discarding
//!   thread's own (the discard runs inside it, say in a reset hook: the key
//!   returning on its own list, or recorded as `foreign` with its serial),
//!   the discard is refused at once (its marks undone, the pool not asked),
//!   as for an object given back already. If it is another thread's, the
//!   discard waits (the caller's `pause`, which lets the other thread run)
//!   and marks again once that give-back is over, refused only if `pause`
//!   gives up: the returning key outlives the put by the steps to
//!   [`Returning::done`], and the object may be handed out again within
//!   them, even to the discarding thread (refusing at once refused such a
//!   holder's own discard: on the free-threaded build,
//!   `test_discards_under_load_keep_the_books_and_one_holder_per_object`
//!   failed 5 times in 6; the loom model
//!   `lent::a_new_holders_discard_during_the_last_holders_exit_*` checks
//!   it). (Removing the entry at the exit's start with nothing left
//!   behind, as this module did before, left a window between that removal
//!   and the put back where a discard from another thread found nothing and
//!   destroyed the object: the put was then refused. The loom model `lent`
//!   found it; a build with a GIL never opened the window, a free-threaded
//!   one could.) The returning key is read under the list's lock and set
//!   only under it, so a discard sees the whole key or, once the give-back
//!   is done, none.
//! - Locks are never nested, and no caller code runs under them. Every
//!   lock (a [`FlagLock`]) is only tried for a bounded time
//!   ([`FlagLock::try_with_bounded`]): after a `fork`, a lock that a
//!   vanished thread held stays held. A discard in the child then skips
//!   that list (its blocks cannot exit there anyway); a thread whose own
//!   list is stuck so starts a fresh one (the blocks it had entered before
//!   the fork then give their objects back as if not discarded); a thread
//!   that cannot register its list is only found by its own discards.
//! - A block entered and never exited leaves its entry behind: a few bytes
//!   (and its list, once its thread is gone), never a wrong answer, since
//!   an exit looks for its own entry's id.
//!
//! [`Registry`] and [`Local`] are the protocol, instantiated by the loom
//! models; `note_lent`, `note_exit` and `mark_discarded` are the process's
//! instance, for the binding.

use std::cell::RefCell;

use crate::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use crate::sync::{Arc, FlagLock};

/// An object lent to a block: its pool's address and its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// The pool that lent the object.
    pub pool: usize,
    /// The object.
    pub obj: usize,
}

struct Entry {
    key: Key,
    /// Unique among registered lists (the list's serial, then a count):
    /// what the block's exit looks for, on whichever thread it runs, and
    /// what a refused discard's [`Marks::undo`] unmarks.
    id: u64,
    /// How many discards marked it: one refused unmarks only its own, so
    /// another's stays.
    marks: u32,
}

/// What a thread's list keeps under its lock.
struct Entries {
    /// The blocks entered on the thread and not exited.
    lent: Vec<Entry>,
    /// The keys that blocks entered on this thread and exited on another
    /// give back now, each with the exiting thread's list serial.
    foreign: Vec<(Key, u64)>,
    /// Entries made on this list so far (the low half of the next id).
    made: u64,
}

/// One thread's entries, and the key of the block giving its object back
/// (see the module's invariants).
pub struct List {
    entries: FlagLock<Entries>,
    returning_pool: AtomicUsize,
    /// 0: none.
    returning_obj: AtomicUsize,
    /// Unique among registered lists (0: not registered): the high half of
    /// its entries' ids.
    serial: u64,
}

impl List {
    fn new(serial: u64) -> Self {
        List {
            entries: FlagLock::new(Entries {
                lent: Vec::new(),
                foreign: Vec::new(),
                made: 0,
            }),
            returning_pool: AtomicUsize::new(0),
            returning_obj: AtomicUsize::new(0),
            serial,
        }
    }

    /// Whether a block entered on this thread has not exited, or is giving
    /// its object back on another (a stuck list counts as one that has).
    fn is_in_use(&self) -> bool {
        self.entries
            .try_with_bounded(|entries| !entries.lent.is_empty() || !entries.foreign.is_empty())
            .unwrap_or(true)
    }

    /// The returning key (read under the entries' lock).
    fn returning(&self) -> Key {
        Key {
            obj: self.returning_obj.load(SeqCst),
            pool: self.returning_pool.load(SeqCst),
        }
    }

    /// Records `key` as returning (under the entries' lock).
    fn set_returning(&self, key: Key) {
        self.returning_pool.store(key.pool, SeqCst);
        self.returning_obj.store(key.obj, SeqCst);
    }
}

/// Every thread's list, for a discard or an exit from any thread.
pub struct Registry {
    threads: FlagLock<Threads>,
}

struct Threads {
    lists: Vec<Arc<List>>,
    /// Serials given so far.
    serials: u64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            threads: FlagLock::new(Threads {
                lists: Vec::new(),
                serials: 0,
            }),
        }
    }
}

impl Registry {
    /// A new list, registered (unless the registry's lock is stuck: see the
    /// module's invariants). Lists whose thread is gone (only the registry
    /// holds them) are dropped meanwhile, unless a block entered there is
    /// still running on another thread.
    fn register(&self) -> Arc<List> {
        self.threads
            .try_with_bounded(|threads| {
                threads
                    .lists
                    .retain(|t| Arc::strong_count(t) > 1 || t.is_in_use());
                threads.serials += 1;
                let list = Arc::new(List::new(threads.serials));
                threads.lists.push(Arc::clone(&list));
                list
            })
            .unwrap_or_else(|| Arc::new(List::new(0)))
    }

    /// Every registered list (none if the registry's lock is stuck).
    fn lists(&self) -> Vec<Arc<List>> {
        self.threads
            .try_with_bounded(|threads| threads.lists.clone())
            .unwrap_or_default()
    }

    /// A discard of `key` is about to destroy the object: marks the blocks
    /// that hold it, on every thread (`own`'s first), so that their exits do
    /// nothing more. [`Marks::undo`] if the discard is refused.
    /// `Err` (nothing left marked) if a block is giving the object back now
    /// on this thread, or on another and `pause` gave up waiting for it
    /// (`pause` returns `false`; see the module's invariants): the discard
    /// is then refused.
    #[cold]
    pub fn mark_discarded(
        &self,
        own: &Local,
        key: Key,
        mut pause: impl FnMut() -> bool,
    ) -> Result<Marks, Refused> {
        loop {
            match self.try_mark(own, key) {
                Ok(marks) => return Ok(marks),
                Err(Busy::Here) => return Err(Refused),
                Err(Busy::Elsewhere) => {
                    if !pause() {
                        return Err(Refused);
                    }
                }
            }
        }
    }

    /// One pass of [`Registry::mark_discarded`]: `Err` (nothing left
    /// marked) where a block is giving the object back.
    fn try_mark(&self, own: &Local, key: Key) -> Result<Marks, Busy> {
        let own = own.list(self);
        let others = self.lists();
        let mut marked = Vec::new();
        for list in std::iter::once(Arc::clone(&own))
            .chain(others.into_iter().filter(|l| !Arc::ptr_eq(l, &own)))
        {
            let found = list.entries.try_with_bounded(|entries| {
                if list.returning() == key {
                    return Err(if Arc::ptr_eq(&list, &own) {
                        Busy::Here
                    } else {
                        Busy::Elsewhere
                    });
                }
                if let Some(&(_, by)) = entries.foreign.iter().find(|(k, _)| *k == key) {
                    return Err(if by == own.serial && by != 0 {
                        Busy::Here
                    } else {
                        Busy::Elsewhere
                    });
                }
                Ok(entries
                    .lent
                    .iter_mut()
                    .filter(|e| e.key == key)
                    .map(|entry| {
                        entry.marks += 1;
                        entry.id
                    })
                    .collect::<Vec<u64>>())
            });
            match found {
                // Stuck (see the module's invariants): skipped.
                None => {}
                Some(Err(busy)) => {
                    Marks { lists: marked }.undo();
                    return Err(busy);
                }
                Some(Ok(ids)) if ids.is_empty() => {}
                Some(Ok(ids)) => marked.push((list, ids)),
            }
        }
        Ok(Marks { lists: marked })
    }
}

/// Where a mark pass found the key returning.
enum Busy {
    /// On the discarding thread's own list.
    Here,
    /// On another thread's.
    Elsewhere,
}

/// A thread's side: its list, made and registered on first use.
pub struct Local {
    list: RefCell<Option<Arc<List>>>,
    /// The give-backs this thread runs now of blocks entered on other
    /// threads (nested ones last): where each is recorded.
    foreign: RefCell<Vec<(Arc<List>, Key, u64)>>,
}

impl Default for Local {
    fn default() -> Self {
        Local::new()
    }
}

impl Local {
    /// No list yet.
    pub const fn new() -> Self {
        Local {
            list: RefCell::new(None),
            foreign: RefCell::new(Vec::new()),
        }
    }

    fn list(&self, registry: &Registry) -> Arc<List> {
        Arc::clone(
            self.list
                .borrow_mut()
                .get_or_insert_with(|| registry.register()),
        )
    }

    /// `f` of this thread's list (a fresh one if it is stuck: see the
    /// module's invariants).
    #[inline(always)]
    fn with_own<R>(&self, registry: &Registry, f: impl FnOnce(&List, &mut Entries) -> R) -> R {
        let mut slot = self.list.borrow_mut();
        let list = slot.get_or_insert_with(|| registry.register());
        let mut f = Some(f);
        if let Some(result) = list
            .entries
            .try_with_bounded(|entries| f.take().map(|f| f(list, entries)))
        {
            return result.unwrap_or_else(|| unreachable!("`f` runs once"));
        }
        let fresh = registry.register();
        let f = f.unwrap_or_else(|| unreachable!("`f` did not run"));
        let result = fresh
            .entries
            .try_with_bounded(|entries| f(&fresh, entries))
            .unwrap_or_else(|| unreachable!("a fresh list is not locked"));
        *slot = Some(fresh);
        result
    }

    /// A block running on this thread got the object of `key`: returns its
    /// entry's id, for the block's exit.
    #[inline]
    pub fn lend(&self, registry: &Registry, key: Key) -> u64 {
        self.with_own(registry, |list, entries| {
            let id = (list.serial << 32) | (entries.made & 0xffff_ffff);
            entries.made = entries.made.wrapping_add(1);
            entries.lent.push(Entry { key, id, marks: 0 });
            id
        })
    }

    /// The block that held the object of `key`, its entry `id`, exits (on
    /// this thread, wherever it was entered): forgets the entry; `None` if
    /// the object was discarded meanwhile (by any thread), else `key` is
    /// returning until [`Returning::done`], once the block has given the
    /// object back.
    #[inline]
    pub fn exit(&self, registry: &Registry, key: Key, id: u64) -> Option<Returning> {
        // `None`: not entered on this thread.
        let here = self.with_own(registry, |list, entries| {
            let lent = &mut entries.lent;
            // The newest entry is the usual one (blocks nest).
            let i = match lent.last() {
                Some(last) if last.id == id => lent.len() - 1,
                _ => lent.iter().rposition(|e| e.id == id)?,
            };
            let marks = if i + 1 == lent.len() {
                lent.pop().map_or(0, |e| e.marks)
            } else {
                lent.remove(i).marks
            };
            if marks > 0 {
                return Some(None);
            }
            let prev = list.returning();
            list.set_returning(key);
            Some(Some(Returning {
                prev: Prev::Key(prev),
            }))
        });
        match here {
            Some(exit) => exit,
            None => self.exit_elsewhere(registry, key, id),
        }
    }

    /// [`Local::exit`] of a block entered on another thread: its entry is
    /// removed from that thread's list, and the give-back recorded there,
    /// under that list's lock (so a discard sees the entry or the give-back,
    /// as for an exit on the entering thread).
    #[cold]
    fn exit_elsewhere(&self, registry: &Registry, key: Key, id: u64) -> Option<Returning> {
        let by = self.list(registry).serial;
        for list in registry.lists() {
            let found = list.entries.try_with_bounded(|entries| {
                let i = entries.lent.iter().rposition(|e| e.id == id)?;
                if entries.lent.remove(i).marks > 0 {
                    return Some(false);
                }
                entries.foreign.push((key, by));
                Some(true)
            });
            match found {
                Some(Some(true)) => {
                    self.foreign.borrow_mut().push((list, key, by));
                    return Some(Returning {
                        prev: Prev::Foreign,
                    });
                }
                Some(Some(false)) => return None,
                // Not there, or stuck (see the module's invariants).
                Some(None) | None => {}
            }
        }
        // A block whose entry went with a stuck list (see the module's
        // invariants): it gives its object back, recording nothing.
        Some(Returning {
            prev: Prev::Nothing,
        })
    }

    /// The newest of this thread's give-backs of a block entered on
    /// another thread is done: its record there goes.
    #[cold]
    fn foreign_done(&self) {
        let Some((list, key, by)) = self.foreign.borrow_mut().pop() else {
            return;
        };
        // (On a stuck list, which every discard skips, left.)
        list.entries.try_with_bounded(|entries| {
            if let Some(i) = entries.foreign.iter().position(|&f| f == (key, by)) {
                entries.foreign.swap_remove(i);
            }
        });
    }
}

/// A block giving its object back: its key stays the thread's returning
/// key until [`Returning::done`], on the thread that exited.
#[must_use = "the key stays returning until the object is back"]
pub struct Returning {
    prev: Prev,
}

/// What an exit's [`Returning`] puts back when done.
enum Prev {
    /// Nothing: it recorded nothing.
    Nothing,
    /// An exit on the thread that entered the block: the returning key it
    /// replaced (`obj` 0: none).
    Key(Key),
    /// An exit on another thread: the newest of this thread's
    /// [`Local::foreign`] give-backs.
    Foreign,
}

impl Returning {
    /// The object is back (or destroyed by its pool): puts the returning
    /// key back as it was before the exit.
    #[inline]
    pub fn done(self, local: &Local) {
        let prev = match self.prev {
            Prev::Key(prev) => prev,
            Prev::Nothing => return,
            Prev::Foreign => return local.foreign_done(),
        };
        let slot = local.list.borrow();
        // The list the exit recorded on, unless a fork replaced it since
        // (the stuck one is skipped by every discard).
        let Some(list) = slot.as_ref() else { return };
        if prev.obj == 0 {
            list.returning_obj.store(0, SeqCst);
        } else {
            // Nested in another's give-back: its whole key again, under the
            // lock (a discard never sees half of it).
            // (On a stuck list, which every discard skips, without it.)
            if list
                .entries
                .try_with_bounded(|_| list.set_returning(prev))
                .is_none()
            {
                list.set_returning(prev);
            }
        }
    }
}

/// Why a discard is refused: a block is giving the object back now.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused;

/// The lists where [`Registry::mark_discarded`] marked entries.
pub struct Marks {
    /// Each list, with the ids of the entries marked there.
    lists: Vec<(Arc<List>, Vec<u64>)>,
}

impl Marks {
    /// The discard was refused: the blocks still hold the object.
    #[cold]
    pub fn undo(self) {
        for (list, ids) in self.lists {
            list.entries.try_with_bounded(|entries| {
                for entry in entries.lent.iter_mut().filter(|e| ids.contains(&e.id)) {
                    entry.marks -= 1;
                }
            });
        }
    }
}

#[cfg(all(not(loom), feature = "python"))]
mod process {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use super::{Key, Local, Marks, Refused, Registry};
    use crate::blocks::Offload;

    static REGISTRY: OnceLock<Registry> = OnceLock::new();

    thread_local! {
        static LOCAL: Local = const { Local::new() };
    }

    fn registry() -> &'static Registry {
        REGISTRY.get_or_init(Registry::default)
    }

    /// [`Local::lend`] on this thread, in the process's registry: the
    /// entry's id, for [`end_lent`]. For the binding's `borrow()` entry,
    /// its only caller, into which it is inlined (a call and its saved
    /// registers less, about 20 instructions a block): with more callers
    /// (`note_lent_outlined`'s), `LOCAL.with` of it was not.
    #[inline(always)]
    pub fn note_lent(key: Key) -> u64 {
        LOCAL.with(|local| local.lend(registry(), key))
    }

    /// [`note_lent`] for the other callers (an `aborrow()` block's entry).
    #[inline(never)]
    pub fn note_lent_outlined(key: Key) -> u64 {
        LOCAL.with(|local| local.lend(registry(), key))
    }

    /// The end, on this thread, of a block that held the object of `key`
    /// (its entry `id`, from [`note_lent`] on any thread): `None` if it was
    /// discarded meanwhile (by any thread), else what `give_back` returns,
    /// run while `key` is returning ([`Local::exit`], then
    /// [`Returning::done`](super::Returning::done)).
    #[inline]
    pub fn end_lent<R>(key: Key, id: u64, give_back: impl FnOnce() -> R) -> Option<R> {
        LOCAL.with(|local| {
            let returning = local.exit(registry(), key, id)?;
            let result = give_back();
            returning.done(local);
            Some(result)
        })
    }

    /// How long a discard waits for another thread's give-back of its
    /// object before it is refused (see the module's invariants): a
    /// give-back that takes longer runs caller code (a reset hook) that
    /// may itself wait for the discarding thread.
    const PATIENCE: Duration = Duration::from_secs(5);

    /// [`Registry::mark_discarded`] from this thread, in the process's
    /// registry, waiting through `offload` (which lets other threads run:
    /// the one giving the object back may need to) for up to
    /// [`PATIENCE`].
    #[cold]
    pub fn mark_discarded(key: Key, offload: &impl Offload) -> Result<Marks, Refused> {
        let mut deadline = None;
        let mut pauses = 0_u32;
        LOCAL.with(|local| {
            registry().mark_discarded(local, key, || {
                let now = Instant::now();
                if now >= *deadline.get_or_insert(now + PATIENCE) {
                    return false;
                }
                pauses += 1;
                let yielding = pauses < 64;
                offload.run(move || {
                    if yielding {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(Duration::from_micros(100));
                    }
                });
                true
            })
        })
    }
}

#[cfg(all(not(loom), feature = "python"))]
pub use process::{end_lent, mark_discarded, note_lent, note_lent_outlined};

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;

    use super::{Key, Local, Marks, Refused, Registry};

    const A: Key = Key { pool: 1, obj: 10 };
    const B: Key = Key { pool: 1, obj: 20 };
    const OTHER_POOL: Key = Key { pool: 2, obj: 10 };

    /// One thread's lending (its `Local`) in a registry, with the steps the
    /// tests take.
    struct Lending {
        registry: Arc<Registry>,
        local: Local,
        /// The ids of the blocks entered and not exited, newest last.
        entered: std::cell::RefCell<Vec<(Key, u64)>>,
    }

    impl Lending {
        /// A fresh registry and thread list, with a block entered for each
        /// of `keys`.
        fn with(keys: &[Key]) -> Self {
            let lending = Lending {
                registry: Arc::new(Registry::default()),
                local: Local::new(),
                entered: Default::default(),
            };
            for &key in keys {
                lending.lend(key);
            }
            lending
        }

        fn lend(&self, key: Key) {
            let id = self.local.lend(&self.registry, key);
            self.entered.borrow_mut().push((key, id));
        }

        /// The exit of the newest block of `key` (of a block never entered,
        /// if none: its id matches no entry).
        fn exit(&self, key: Key) -> Option<super::Returning> {
            let mut entered = self.entered.borrow_mut();
            let id = match entered.iter().rposition(|&(k, _)| k == key) {
                Some(i) => entered.remove(i).1,
                None => u64::MAX,
            };
            drop(entered);
            self.local.exit(&self.registry, key, id)
        }

        /// A discard that never waits: no other thread gives the object
        /// back meanwhile in these tests (but in the last two).
        fn discard(&self, key: Key) -> Result<super::Marks, Refused> {
            self.registry
                .mark_discarded(&self.local, key, || unreachable!("nothing to wait for"))
        }

        /// A block's exit: whether it gives its object back (it was not
        /// discarded), which it then has.
        fn gives_back(&self, key: Key) -> bool {
            match self.exit(key) {
                Some(returning) => {
                    returning.done(&self.local);
                    true
                }
                None => false,
            }
        }

        fn listed(&self) -> usize {
            self.local
                .list(&self.registry)
                .entries
                .try_with_bounded(|entries| entries.lent.len())
                .unwrap()
        }
    }

    #[test]
    fn an_exit_without_a_discard_gives_back_and_forgets_its_entry() {
        let t = Lending::with(&[A]);
        assert!(t.gives_back(A));
        assert_eq!(t.listed(), 0);
    }

    #[test]
    fn a_discard_marks_only_its_key() {
        let t = Lending::with(&[A, B, OTHER_POOL]);
        let _marks = t.discard(A).unwrap();
        assert!(t.gives_back(B));
        assert!(t.gives_back(OTHER_POOL));
        assert!(!t.gives_back(A));
        assert_eq!(t.listed(), 0);
    }

    #[test]
    fn an_undone_discard_leaves_the_block_holding_the_object() {
        let t = Lending::with(&[A]);
        t.discard(A).unwrap().undo();
        assert!(t.gives_back(A));
    }

    #[test]
    fn a_refused_discard_keeps_the_mark_of_one_that_destroyed_the_object() {
        let t = Lending::with(&[A]);
        let refused = t.discard(A).unwrap();
        let _destroyed = t.discard(A).unwrap();
        refused.undo();
        assert!(!t.gives_back(A));
    }

    #[test]
    fn a_discard_while_a_block_gives_the_object_back_is_refused() {
        let t = Lending::with(&[A]);
        let returning = t.exit(A).unwrap();
        assert_eq!(t.discard(A).err(), Some(Refused));
        returning.done(&t.local);
        // Given back: a discard now finds nothing to mark (the pool decides).
        assert!(t.discard(A).unwrap().lists.is_empty());
    }

    #[test]
    fn a_refused_discard_leaves_no_mark_on_other_blocks() {
        // An unchecked pool may lend one object to two blocks.
        let t = Lending::with(&[A, A]);
        let returning = t.exit(A).unwrap();
        assert!(t.discard(A).is_err());
        returning.done(&t.local);
        assert!(t.gives_back(A));
    }

    #[test]
    fn a_discard_after_the_exit_marks_nothing() {
        let t = Lending::with(&[A]);
        assert!(t.gives_back(A));
        assert!(t.discard(A).unwrap().lists.is_empty());
        // A later block of the same object is not marked by it.
        t.lend(A);
        assert!(t.gives_back(A));
    }

    #[test]
    fn nested_blocks_of_one_object_are_all_marked() {
        let t = Lending::with(&[A, A]);
        let _marks = t.discard(A).unwrap();
        assert!(!t.gives_back(A));
        assert!(!t.gives_back(A));
        // No entry left: a third exit (never entered) is not marked.
        assert!(t.gives_back(A));
    }

    #[test]
    fn a_block_inside_a_returning_one_is_its_own() {
        // A reset hook that runs a block of the same object while its outer
        // block gives it back (an unchecked pool).
        let t = Lending::with(&[A]);
        let outer = t.exit(A).unwrap();
        t.lend(A);
        assert!(t.gives_back(A));
        outer.done(&t.local);
        assert_eq!(t.listed(), 0);
    }

    #[test]
    fn a_discard_on_another_thread_marks_this_threads_block() {
        let t = Lending::with(&[A]);
        let other = Arc::clone(&t.registry);
        std::thread::spawn(move || {
            let _marks = other
                .mark_discarded(&Local::new(), A, || unreachable!("nothing to wait for"))
                .unwrap();
        })
        .join()
        .unwrap();
        assert!(!t.gives_back(A));
    }

    #[test]
    fn lists_of_finished_threads_are_dropped_from_the_registry() {
        let registry = Arc::new(Registry::default());
        for _ in 0..4 {
            let registry = Arc::clone(&registry);
            std::thread::spawn(move || {
                let t = Lending {
                    registry,
                    local: Local::new(),
                    entered: Default::default(),
                };
                t.lend(A);
                assert!(t.gives_back(A));
            })
            .join()
            .unwrap();
        }
        let local = Local::new();
        local.lend(&registry, A);
        // The four dead threads' lists went at this registration.
        assert_eq!(registry.threads.with(|threads| threads.lists.len()), 1);
    }

    #[test]
    fn a_stuck_list_is_replaced_by_a_fresh_one() {
        // A fork child whose own list's lock was held by a vanished thread.
        let t = Lending::with(&[A]);
        let stuck = t.local.list(&t.registry);
        // Held by this thread meanwhile, as by a vanished one: the bounded
        // tries of every step below give up on it.
        stuck.entries.with(|_| {
            t.lend(B);
            // The block of A entered before is no longer found: it gives its
            // object back as if not discarded.
            assert!(t.gives_back(A));
            let _marks = t.discard(B).unwrap();
            assert!(!t.gives_back(B));
        });
    }

    /// A block of `A` exited on another thread (`exit` there makes its
    /// give-back), giving `A` back until [`GivingBack::finish`].
    struct GivingBack {
        go: std::sync::mpsc::Sender<()>,
        done: std::sync::mpsc::Receiver<()>,
        thread: std::thread::JoinHandle<()>,
    }

    impl GivingBack {
        fn start(
            registry: &Arc<Registry>,
            exit: impl FnOnce(&Registry, &Local) -> super::Returning + Send + 'static,
        ) -> Self {
            let (go, wait_go) = std::sync::mpsc::channel();
            let (said_done, done) = std::sync::mpsc::channel();
            let (said_ready, ready) = std::sync::mpsc::channel();
            let registry = Arc::clone(registry);
            let thread = std::thread::spawn(move || {
                let local = Local::new();
                let returning = exit(&registry, &local);
                said_ready.send(()).unwrap();
                wait_go.recv().unwrap();
                returning.done(&local);
                said_done.send(()).unwrap();
            });
            ready.recv().unwrap();
            GivingBack { go, done, thread }
        }

        /// A block entered and exited on that thread.
        fn of_its_own(registry: &Arc<Registry>) -> Self {
            GivingBack::start(registry, |registry, local| {
                let id = local.lend(registry, A);
                local.exit(registry, A, id).unwrap()
            })
        }

        /// Lets the give-back end, and waits until it has.
        fn finish(self) {
            self.go.send(()).unwrap();
            self.done.recv().unwrap();
            self.thread.join().unwrap();
        }
    }

    /// A discard of `A` on `here`'s thread that lets `giving` finish at its
    /// first pause: what it returned, and how many pauses it took.
    fn discard_finishing(here: &Lending, giving: GivingBack) -> (Result<Marks, Refused>, u32) {
        let mut giving = Some(giving);
        let mut pauses = 0;
        let result = here.registry.mark_discarded(&here.local, A, || {
            pauses += 1;
            if let Some(giving) = giving.take() {
                giving.finish();
            }
            true
        });
        (result, pauses)
    }

    #[test]
    fn a_discard_waits_for_another_threads_give_back_then_marks() {
        // The object went back to the pool and was handed out again, here,
        // before the other thread's exit recorded that it was done.
        let here = Lending::with(&[]);
        let giving = GivingBack::of_its_own(&here.registry);
        here.lend(A);
        let (marks, pauses) = discard_finishing(&here, giving);
        assert_eq!(pauses, 1);
        assert_eq!(marks.unwrap().lists.len(), 1);
        assert!(!here.gives_back(A));
    }

    #[test]
    fn a_discard_that_gives_up_waiting_is_refused_and_marks_nothing() {
        let here = Lending::with(&[]);
        let giving = GivingBack::of_its_own(&here.registry);
        here.lend(A);
        let mut pauses = 0;
        let refused = here.registry.mark_discarded(&here.local, A, || {
            pauses += 1;
            pauses < 3
        });
        assert_eq!(refused.err(), Some(Refused));
        assert_eq!(pauses, 3);
        giving.finish();
        assert!(here.gives_back(A));
    }

    /// Runs `f` on a new thread with a `Local` of its own, and returns
    /// what it returns.
    fn on_another_thread<R: Send + 'static>(
        registry: &Arc<Registry>,
        f: impl FnOnce(&Registry, &Local) -> R + Send + 'static,
    ) -> R {
        let registry = Arc::clone(registry);
        std::thread::spawn(move || f(&registry, &Local::new()))
            .join()
            .unwrap()
    }

    #[test]
    fn a_block_entered_on_a_finished_thread_and_exited_here_forgets_its_entry() {
        // A generator holding a block, resumed by a thread pool: entered on
        // one worker (gone since), exited on another.
        let registry = Arc::new(Registry::default());
        let id = on_another_thread(&registry, |registry, local| local.lend(registry, A));
        let here = Local::new();
        // The entering thread's list outlived it: a block of its runs on.
        here.lend(&registry, B);
        assert_eq!(registry.threads.with(|threads| threads.lists.len()), 2);
        here.exit(&registry, A, id).unwrap().done(&here);
        // Nothing left behind to mark and strand a later block.
        let lists = registry.lists();
        let left: usize = lists
            .iter()
            .map(|l| {
                l.entries
                    .try_with_bounded(|e| e.lent.len() + e.foreign.len())
                    .unwrap()
            })
            .sum();
        assert_eq!(left, 1, "only B's entry");
    }

    #[test]
    fn a_discard_marks_a_block_that_then_exits_on_another_thread() {
        let t = Lending::with(&[A]);
        let id = t.entered.borrow()[0].1;
        let _marks = t.discard(A).unwrap();
        let gives_back = on_another_thread(&t.registry, move |registry, local| {
            local.exit(registry, A, id).map(|r| r.done(local)).is_some()
        });
        assert!(!gives_back);
        assert_eq!(t.listed(), 0);
    }

    #[test]
    fn a_discard_waits_out_a_give_back_on_another_thread_of_a_block_entered_here() {
        let t = Lending::with(&[A]);
        let id = t.entered.borrow()[0].1;
        let giving = GivingBack::start(&t.registry, move |registry, local| {
            local.exit(registry, A, id).unwrap()
        });
        // The give-back is recorded on this thread's list, where the entry
        // was: a discard now waits for it, then finds nothing to mark.
        let (marks, pauses) = discard_finishing(&t, giving);
        assert_eq!(pauses, 1);
        assert!(marks.unwrap().lists.is_empty());
    }

    #[test]
    fn a_discard_inside_its_own_give_back_of_a_block_entered_elsewhere_is_refused_at_once() {
        // A reset hook run by the exit discards the object it gives back.
        let t = Lending::with(&[A]);
        let id = t.entered.borrow()[0].1;
        let refused = on_another_thread(&t.registry, move |registry, local| {
            let returning = local.exit(registry, A, id).unwrap();
            let refused = registry.mark_discarded(local, A, || unreachable!("its own give-back"));
            returning.done(local);
            refused.err()
        });
        assert_eq!(refused, Some(Refused));
        // Done: nothing recorded is left.
        assert!(t.discard(A).unwrap().lists.is_empty());
    }
}
