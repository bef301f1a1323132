//! The export/release protocol of a leased buffer (`buffer_lease.rs`).
//!
//! As in the block lease models (`lease.rs`), the buffer's bytes are
//! modelled by loom cells: an export (or a consumer that kept the address)
//! reads them, and whoever changes the bytes (`clear` and `append`) or gets
//! them back (a release, or the end of the lease when the last `Arc` clone
//! goes, as a Python `Buffer` is destroyed) writes them. loom reports any
//! read and write of a cell not ordered by happens-before, so these models
//! prove, for every interleaving within the bound:
//! - the bytes never change while an export is alive (checked on the real
//!   bytes, which a view reads);
//! - they come back exactly once, never under a live export, and never
//!   before the end of the lease once exported (a consumer that kept the
//!   address without an export still reads them);
//! - no export starts after a release.

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;

use super::{check_returned_once, spawn_with};
use crate::buffer_lease::{BufferError, LeasedBuffer};

/// A leased buffer and a model of its bytes. Dropping the last reference
/// ends the lease: bytes still held come back, and are reused at once.
struct Buffer {
    lease: LeasedBuffer,
    mem: UnsafeCell<u32>,
    returned: Arc<AtomicUsize>,
}

impl Buffer {
    /// A new lease, and the count of times its memory came back.
    fn lent() -> (Arc<Self>, Arc<AtomicUsize>) {
        let returned = Arc::new(AtomicUsize::new(0));
        let mut data = Vec::with_capacity(8);
        data.extend_from_slice(b"abc");
        let lent = Arc::new(Buffer {
            lease: LeasedBuffer::new(data),
            mem: UnsafeCell::new(0),
            returned: Arc::clone(&returned),
        });
        (lent, returned)
    }

    /// Reads the bytes (as an export, or through a kept address).
    fn read(&self) {
        // SAFETY: loom's cell checks the claim under test: no write
        // overlaps this read.
        self.mem.with(|p| unsafe { p.read() });
    }

    /// Writes the bytes (a change, or a new owner reusing them).
    fn write(&self) {
        // SAFETY: as in `read`.
        self.mem.with_mut(|p| unsafe { *p += 1 });
    }

    /// An explicit `release()`: what comes back at once is reused.
    fn release_now(&self) {
        if let Ok(data) = self.lease.release() {
            self.came_back(data);
        }
    }

    /// The holder lets go (`release_or_defer`, a `with` exit): unless
    /// released already, what comes back at once is reused.
    fn let_go(&self) {
        match self.lease.release_or_defer() {
            Ok(data) => self.came_back(data),
            Err(e) => assert_eq!(e, BufferError::Released),
        }
    }

    /// The bytes came back to this party: it reuses them.
    fn came_back(&self, data: Option<Vec<u8>>) {
        if data.is_some() {
            self.write();
            self.returned.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An export that reads while it lives.
    fn view(&self) -> bool {
        if self.lease.export().is_err() {
            return false;
        }
        self.read();
        self.lease.unexport();
        true
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let data = self.lease.finish().map(|(data, _)| data);
        self.came_back(data);
    }
}

/// Two views race `release()`: a release never wins while a view is alive,
/// returns the bytes at once only if no view ever started, and otherwise
/// leaves them to the end of the lease.
#[test]
fn buffer_views_racing_release() {
    check_returned_once(Buffer::lent, |b| {
        let views: Vec<_> = (0..2)
            .map(|_| {
                spawn_with(&b, move |b| {
                    b.view();
                })
            })
            .collect();
        let early = match b.lease.release() {
            Ok(data) => {
                let now = data.is_some();
                b.came_back(data);
                Some(now)
            }
            Err(e) => {
                assert!(matches!(e, BufferError::Exported(n) if n > 0));
                None
            }
        };
        for v in views {
            v.join().unwrap();
        }
        if early.is_none() {
            let data = b.lease.release().expect("the views are done");
            assert!(data.is_none(), "exported: deferred to the end");
        }
        assert!(b.lease.is_released());
        assert_eq!(b.lease.export(), Err(BufferError::Released));
        assert_eq!(early == Some(true), !b.lease.was_exported());
        drop(b);
    });
}

/// A consumer ends its export at once and reads through the address under
/// a reference (`np.ndarray(buffer=buf)`), while `release()` and a `with`
/// exit race: the bytes come back once, never before the consumer's read.
#[test]
fn buffer_raw_address_racing_release_and_exit() {
    check_returned_once(Buffer::lent, |b| {
        let consumer = spawn_with(&b, move |b| {
            if b.lease.export().is_ok() {
                b.lease.unexport();
                b.read();
            }
        });
        let releaser = spawn_with(&b, move |b| b.release_now());
        b.let_go();
        drop(b);
        consumer.join().unwrap();
        releaser.join().unwrap();
    });
}

/// A view races a change (`clear` then `append`, in place: within the
/// capacity): the view reads the real bytes, and they never change under it
/// (it sees all of the old contents or all of the new, never a mix).
#[test]
fn buffer_change_racing_a_view() {
    check_returned_once(Buffer::lent, |b| {
        let view = spawn_with(&b, move |b| {
            let (ptr, len) = b.lease.export().expect("not released");
            // SAFETY: the export keeps the bytes alive and unchanged.
            let seen = unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec();
            b.lease.unexport();
            seen
        });
        if b.lease.clear().is_ok() {
            // Refused if a view started in between: then nothing is added.
            let _ = b.lease.append(b"xy");
        }
        let seen = view.join().unwrap();
        assert!(
            [&b"abc"[..], b"", b"xy"].contains(&seen.as_slice()),
            "a view saw a change: {seen:?}"
        );
        assert_eq!(b.lease.exports(), 0);
        b.lease.release_or_defer().unwrap();
        drop(b);
    });
}
