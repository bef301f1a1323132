use super::*;

fn pool(config: BlockConfig) -> BlockPool {
    BlockPool::new(config).unwrap()
}

/// A pool of the default configuration changed by `change`.
fn pool_with(change: impl FnOnce(&mut BlockConfig)) -> BlockPool {
    let mut config = BlockConfig::default();
    change(&mut config);
    pool(config)
}

#[test]
fn blocks_are_served_from_the_smallest_fitting_class_and_reused() {
    let p = pool(BlockConfig::default());
    let b = p.get(1000, false, &InPlace).unwrap();
    assert_eq!(b.capacity(), 1024);
    assert_eq!(b.as_ptr() as usize % DEFAULT_ALIGNMENT, 0);
    let ptr = b.as_ptr();
    p.put(b, &InPlace);
    let again = p.get(900, false, &InPlace).unwrap();
    assert_eq!(again.as_ptr(), ptr);
    let s = p.stats();
    assert_eq!(s.classes.len(), 1);
    assert_eq!(
        (s.classes[0].counts.hits, s.classes[0].counts.misses),
        (1, 1)
    );
    assert_eq!((s.bytes_in_use, s.bytes_idle), (1024, 0));
}

#[test]
fn layered_classes_from_pairs() {
    let p = pool(BlockConfig {
        classes: Some(vec![
            (4096, Some(1000)),
            (65536, Some(500)),
            (1 << 20, Some(100)),
        ]),
        ..BlockConfig::default()
    });
    assert_eq!(p.classes().sizes(), &[4096, 65536, 1 << 20]);
    assert_eq!(p.max_block(), 1 << 20);
    let b = p.get(5000, false, &InPlace).unwrap();
    assert_eq!(b.capacity(), 65536);
    p.put(b, &InPlace);
    assert_eq!(p.stats().classes[0].max_idle, 500);
}

#[test]
fn oversize_requests_are_exact_and_never_kept() {
    let p = pool_with(|c| c.max_block = Some(4096));
    let b = p.get(5000, false, &InPlace).unwrap();
    assert_eq!(b.capacity(), 5000);
    assert_eq!(p.stats().bytes_in_use, 5000);
    p.put(b, &InPlace);
    let s = p.stats();
    assert_eq!(
        (
            s.oversize,
            s.oversize_released,
            s.bytes_in_use,
            s.bytes_idle
        ),
        (1, 1, 0, 0)
    );
}

#[test]
fn idle_bytes_never_exceed_the_cap() {
    let p = pool_with(|c| c.max_idle_bytes = 10_000);
    let blocks: Vec<_> = (0..5)
        .map(|_| p.get(4096, false, &InPlace).unwrap())
        .collect();
    for b in blocks {
        p.put(b, &InPlace);
        assert!(p.stats().bytes_idle <= 10_000);
    }
    let s = p.stats();
    assert_eq!(s.bytes_idle, 8192);
    assert_eq!(s.classes[0].counts.dropped, 3);
}

#[test]
fn poison_fills_every_returned_byte() {
    let p = pool_with(|c| c.zero = ZeroMode::Poison);
    let b = p.get(300, false, &InPlace).unwrap();
    let capacity = b.capacity();
    b.fill(0x11);
    p.put(b, &InPlace);
    let b = p.get(300, false, &InPlace).unwrap();
    // SAFETY: in bounds of a block we own.
    assert!((0..capacity).all(|i| unsafe { b.as_ptr().add(i).read() } == POISON));
}

#[test]
fn zero_modes() {
    for (zero, expect_clean_on_reuse) in [
        (ZeroMode::Never, false),
        (ZeroMode::Release, true),
        (ZeroMode::Acquire, true),
        (ZeroMode::Poison, false),
    ] {
        let p = pool(BlockConfig {
            zero,
            ..BlockConfig::default()
        });
        let b = p.get(100, false, &InPlace).unwrap();
        b.fill(0xEE);
        p.put(b, &InPlace);
        let b = p.get(100, false, &InPlace).unwrap();
        // SAFETY: in bounds of a block we own.
        let first = unsafe { b.as_ptr().read() };
        assert_eq!(first == 0, expect_clean_on_reuse, "{zero:?}");
        b.fill(0xEE);
        p.put(b, &InPlace);
        let b = p.get(100, true, &InPlace).unwrap();
        // SAFETY: as above.
        assert!((0..100).all(|i| unsafe { b.as_ptr().add(i).read() } == 0));
    }
}

#[test]
fn trim_frees_down_to_keep_and_close_frees_all() {
    let p = pool(BlockConfig::default());
    let blocks: Vec<_> = [100, 100, 5000, 70_000]
        .iter()
        .map(|&n| p.get(n, false, &InPlace).unwrap())
        .collect();
    let total: usize = blocks.iter().map(OwnedBlock::capacity).sum();
    for b in blocks {
        p.put(b, &InPlace);
    }
    assert_eq!(p.stats().bytes_idle, total);
    let freed = p.trim(300, &InPlace);
    assert!(p.stats().bytes_idle <= 300);
    assert_eq!(freed + p.stats().bytes_idle, total);
    let idle = p.stats().bytes_idle;
    assert!(idle > 0);
    assert_eq!(p.close(&InPlace), idle);
    assert_eq!(p.stats().bytes_idle, 0);
    assert!(p.is_closed());
}

#[test]
fn a_never_exported_lease_goes_back_at_release_an_exported_one_at_its_end() {
    let p = pool_with(|c| c.shards = Some(1));
    let plain = p.lease(100, false, &InPlace).unwrap();
    p.release(&plain, &InPlace).unwrap();
    assert_eq!((p.stats().totals.in_use, p.idle_blocks()), (0, 1));
    assert_eq!(p.release(&plain, &InPlace), Err(LeaseError::Released));
    let mut viewed = p.lease(100, false, &InPlace).unwrap();
    let ptr = viewed.export().unwrap();
    assert_eq!(p.release(&viewed, &InPlace), Err(LeaseError::Exported(1)));
    viewed.unexport();
    p.release(&viewed, &InPlace).unwrap();
    // The address may still be in use: the memory is not reused yet.
    assert_eq!((p.stats().totals.in_use, p.idle_blocks()), (1, 0));
    let other = p.lease(100, false, &InPlace).unwrap();
    assert_ne!(other.export().unwrap(), ptr);
    other.unexport();
    assert_eq!(p.finish(&mut viewed, &InPlace), Some(true));
    assert_eq!(p.finish(&mut viewed, &InPlace), None);
    assert_eq!((p.stats().totals.in_use, p.idle_blocks()), (1, 1));
    let mut forgotten = other;
    assert_eq!(p.finish(&mut forgotten, &InPlace), Some(false));
    let s = p.stats();
    assert_eq!((s.totals.in_use, s.totals.puts, s.bytes_in_use), (0, 3, 0));
}

#[test]
fn poison_fills_a_deferred_block_at_release() {
    for (zero, poisoned) in [(ZeroMode::Poison, true), (ZeroMode::Never, false)] {
        let p = pool(BlockConfig {
            zero,
            ..BlockConfig::default()
        });
        let leased = p.lease(300, false, &InPlace).unwrap();
        let ptr = leased.export().unwrap();
        // SAFETY: in bounds of a live export.
        unsafe { std::ptr::write_bytes(ptr, 0x11, 300) };
        leased.unexport();
        p.release(&leased, &InPlace).unwrap();
        // SAFETY: the memory stays allocated until the lease ends; this
        // reads it as a consumer that kept the address would.
        let first = unsafe { ptr.read() };
        assert_eq!(first == POISON, poisoned, "{zero:?}");
        assert_eq!(first == 0x11, !poisoned, "{zero:?}");
    }
}

#[test]
fn huge_classes_route_every_request_to_a_class_that_holds_it() {
    let p = pool_with(|c| c.max_block = Some((1 << 63) - 1));
    // Routed to the 2^62 class, whose allocation fails: an error, not
    // a block smaller than asked.
    assert_eq!(
        p.get(1 << 62, false, &InPlace).unwrap_err(),
        BlockError::Alloc(AllocError { size: 1 << 62 })
    );
    let b = p.lease(5000, false, &InPlace).unwrap();
    assert!(b.capacity() >= 5000 && b.len() == 5000);
}

#[test]
fn config_is_checked() {
    let refused = |c: BlockConfig| BlockPool::new(c).err().unwrap().field;
    let classes = |classes: Vec<(usize, Option<usize>)>, max_block: Option<usize>| BlockConfig {
        classes: Some(classes),
        max_block,
        ..BlockConfig::default()
    };
    let aligned = BlockConfig {
        alignment: 48,
        ..BlockConfig::default()
    };
    assert_eq!(refused(aligned), "alignment");
    let too_small = classes(vec![(8192, None)], Some(4096));
    assert_eq!(refused(too_small), "max_block");
    let too_large = classes(vec![(4096, None)], Some(65536));
    assert_eq!(refused(too_large), "max_block");
    assert_eq!(refused(classes(vec![], None)), "classes");
}

/// Issue 13: above 256 KiB the default classes are four times apart, and a
/// request whose class has nothing idle takes the idle block of a larger
/// class (warm, and already made) instead of making a new one; the block
/// comes back to its own class, whose books balance.
#[test]
fn a_large_request_takes_an_idle_larger_block_before_a_new_one() {
    let p = pool_with(|c| c.shards = Some(1));
    let sizes = p.classes().sizes();
    let tail = &sizes[sizes.iter().position(|&s| s == COARSE_FROM).unwrap()..];
    assert_eq!(tail, &[256 << 10, 1 << 20, 4 << 20, 16 << 20]);
    let big = p.lease(3 << 20, false, &InPlace).unwrap();
    let ptr = big.export().unwrap();
    big.unexport();
    let mut big = big;
    p.finish(&mut big, &InPlace);
    for n in [(256 << 10) + 1, 1 << 20, 3 << 20, 4 << 20] {
        let l = p.lease(n, false, &InPlace).unwrap();
        assert_eq!(l.capacity(), 4 << 20, "n={n}");
        assert_eq!(
            l.export().unwrap(),
            ptr,
            "n={n}: the idle block, not a new one"
        );
        l.unexport();
        p.release(&l, &InPlace).unwrap();
        let mut l = l;
        p.finish(&mut l, &InPlace);
    }
    // A request whose own class has an idle block takes that one.
    let own = p.get(1 << 20, false, &InPlace).unwrap();
    let other = p.get(1 << 20, false, &InPlace).unwrap();
    assert_eq!(
        (own.capacity(), other.capacity()),
        (4 << 20, 1 << 20),
        "the 4 MiB block first, then a new 1 MiB one"
    );
    let small = other.as_ptr();
    p.put(other, &InPlace);
    let again = p.get(900 << 10, false, &InPlace).unwrap();
    assert_eq!(again.as_ptr(), small);
    p.put(again, &InPlace);
    p.put(own, &InPlace);
    // At or below 256 KiB nothing is borrowed: the fine classes serve.
    let fine = p.get(200 << 10, false, &InPlace).unwrap();
    assert_eq!(fine.capacity(), 229_376);
    p.put(fine, &InPlace);
    let s = p.stats();
    for c in &s.classes {
        let k = &c.counts;
        assert_eq!(k.created - k.destroyed, k.idle + k.in_use, "{}", c.size);
        assert_eq!(k.in_use, 0);
    }
    let four = s.classes.iter().find(|c| c.size == 4 << 20).unwrap();
    assert_eq!((four.counts.misses, four.counts.hits), (1, 5));
    assert_eq!(s.bytes_in_use, 0);
}

#[test]
fn explicit_classes_serve_a_request_from_its_own_class() {
    let p = pool_with(|c| c.classes = Some(vec![(1 << 20, None), (4 << 20, None)]));
    let big = p.get(3 << 20, false, &InPlace).unwrap();
    p.put(big, &InPlace);
    let b = p.get(1 << 19, false, &InPlace).unwrap();
    assert_eq!(b.capacity(), 1 << 20, "a new block of its class");
    p.put(b, &InPlace);
    assert_eq!(p.idle_blocks(), 2);
}

/// The idle byte cap holds for borrowed large blocks too: each comes back
/// to its own class, which charges the cap.
#[test]
fn large_blocks_keep_the_idle_byte_cap() {
    let p = pool_with(|c| c.max_idle_bytes = 5 << 20);
    let blocks: Vec<_> = [3 << 20, 3 << 20, 600 << 10, 600 << 10]
        .iter()
        .map(|&n| p.get(n, false, &InPlace).unwrap())
        .collect();
    for b in blocks {
        p.put(b, &InPlace);
        assert!(p.stats().bytes_idle <= 5 << 20);
    }
    assert_eq!(p.stats().bytes_idle, 5 << 20);
    // The 4 MiB block serves a 600 KiB request once the 1 MiB one is out.
    let a = p.get(600 << 10, false, &InPlace).unwrap();
    let b = p.get(600 << 10, false, &InPlace).unwrap();
    assert_eq!((a.capacity(), b.capacity()), (1 << 20, 4 << 20));
    assert_eq!(p.stats().totals.misses, 4);
}

/// Zeroing covers what the holder of a lease could write, no more: with
/// `zero="release"` the pages of a large block past `n` are never touched.
#[test]
#[cfg(target_os = "linux")]
fn zeroing_a_large_lease_touches_only_its_bytes() {
    use crate::memory::resident_pages;
    for zero in [ZeroMode::Release, ZeroMode::Acquire, ZeroMode::Never] {
        let p = pool_with(|c| c.zero = zero);
        let n = 600 << 10;
        let l = p.lease(n, true, &InPlace).unwrap();
        let ptr = l.export().unwrap();
        // SAFETY: within the lease's `n` bytes, exported to us.
        unsafe { std::ptr::write_bytes(ptr, 0x5A, n) };
        l.unexport();
        p.release(&l, &InPlace).unwrap();
        let mut l = l;
        p.finish(&mut l, &InPlace);
        let again = p.lease(n - (200 << 10), true, &InPlace).unwrap();
        let at = again.export().unwrap();
        assert_eq!(at, ptr, "{zero:?}: the same block");
        assert_eq!(again.capacity(), 1 << 20);
        // SAFETY: the block is alive (leased) and page-aligned.
        let resident = resident_pages(at, again.capacity());
        assert!(resident <= n.div_ceil(4096), "{zero:?}: {resident} pages");
        // SAFETY: within the lease's bytes.
        let zeroed = (0..n - (200 << 10)).all(|i| unsafe { at.add(i).read() } == 0);
        assert!(zeroed, "{zero:?}");
        again.unexport();
    }
}

/// A lease carries the class it was lent from (`Leased::class`), which
/// its release trusts only where that class holds the block's size: a
/// lease released to another pool (possible from Rust) is filed by its
/// size there, as `put` files a block.
#[test]
fn a_lease_released_to_another_pool_is_filed_by_its_size() {
    let classes = |sizes: &[usize]| BlockConfig {
        classes: Some(sizes.iter().map(|&s| (s, None)).collect()),
        ..BlockConfig::default()
    };
    let a = pool(classes(&[64, 128]));
    let b = pool(classes(&[128, 256]));
    // Class 0 of `a` (64 bytes): `b` has no class of 64 bytes, so its
    // class 0 (128 bytes) must not take it: it is freed.
    let small = a.lease(10, false, &InPlace).unwrap();
    b.release(&small, &InPlace).unwrap();
    assert_eq!(b.idle_blocks(), 0);
    // Class 1 of `a` (128 bytes) is class 0 of `b`.
    let large = a.lease(100, false, &InPlace).unwrap();
    b.release(&large, &InPlace).unwrap();
    let s = b.stats();
    assert_eq!(b.idle_blocks(), 1);
    assert_eq!((s.classes.len(), s.classes[0].size), (1, 128));
    assert_eq!(s.bytes_idle, 128);
    // And a lease released to its own pool goes back to its class.
    let own = a.lease(100, false, &InPlace).unwrap();
    a.release(&own, &InPlace).unwrap();
    assert_eq!(a.stats().bytes_idle, 128);
}
