//! Why a `get` or a `put` failed. A failure leaves the pool's books
//! balanced: what the call took is given back or destroyed (and counted).

/// Why `get` gave no object.
#[derive(Debug, PartialEq, Eq)]
pub enum GetError<E> {
    /// A hook (factory, reset, validate, park) failed.
    Hook(E),
    /// A bounded pool stayed full until the timeout.
    Timeout,
    /// The pool is closed.
    Closed,
    /// `max_waiting` callers wait already for a full bounded pool: refused
    /// at once, without waiting.
    TooBusy,
    /// The factory returned an object that is handed out already.
    AlreadyOut,
    /// `get_many` asked for more objects than the pool may ever hold.
    TooMany {
        /// Objects asked for.
        requested: usize,
        /// The pool's bound.
        max_size: usize,
    },
    /// The non-blocking `get` was settled already ([`Pending`](super::Pending)).
    Settled,
    /// `get_many` asked for more objects than memory can list.
    NoMemory {
        /// Objects asked for.
        requested: usize,
    },
}

/// Why [`Pool::open`](super::Pool::open) gave no pool. Nothing is left
/// behind: what it made is destroyed.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenError<E> {
    /// A setting refused.
    Config(super::ConfigError),
    /// Making the objects asked for up front failed.
    Fill(GetError<E>),
}

/// Why `put` refused or failed.
#[derive(Debug, PartialEq, Eq)]
pub enum PutError<E> {
    /// A reset hook failed; the object was destroyed.
    Hook(E),
    /// A checked pool was given an object it has not handed out (foreign, or
    /// returned already). Nothing changed. For `put_many`, the position.
    NotOut {
        /// The refused object's position in the batch (0 for `put`).
        index: usize,
    },
}

impl<E> PutError<E> {
    /// Whether the pool refused the object as not handed out (nothing
    /// changed), rather than destroyed it after a failed reset.
    pub fn is_not_out(&self) -> bool {
        matches!(self, PutError::NotOut { .. })
    }
}

/// Why `discard` refused: a checked pool was given an object it has not
/// handed out (foreign, or given back already). Nothing changed.
#[derive(Debug, PartialEq, Eq)]
pub struct NotOut;
