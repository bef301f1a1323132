"""shardpool.metrics against a real prometheus_client registry and its text output."""

from __future__ import annotations

import gc
import re
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import DuplicateTimeseries

from shardpool import BlockPool, BufferPool, ObjectPool, PoolTimeout, TieredPool
from shardpool.metrics import PoolCollector, register, unregister

OBJECT_COUNTERS = (
    "created",
    "destroyed",
    "hits",
    "misses",
    "puts",
    "dropped",
    "expired",
    "reset_errors",
    "invalid",
    "waits",
    "timeouts",
    "cancelled",
)
OBJECT_GAUGES = ("idle", "in_use", "max_in_use")
BLOCK_COUNTERS = (
    "created",
    "destroyed",
    "hits",
    "misses",
    "puts",
    "dropped",
    "expired",
    "oversize",
)


def scrape(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the text exposition, keyed by name and labels."""
    text = generate_latest(registry).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = s.value
    return samples


def types(registry: CollectorRegistry) -> dict[str, str]:
    text = generate_latest(registry).decode()
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def labels(pool: str, kind: str, **more: str) -> frozenset[tuple[str, str]]:
    return frozenset({"pool": pool, "kind": kind, **more}.items())


class Resettable:
    def __init__(self) -> None:
        self.fail = False

    def reset(self) -> None:
        if self.fail:
            raise RuntimeError("reset failed")


def busy_object_pool() -> ObjectPool[Resettable]:
    """A pool whose counters are not all zero: hits, misses, drops, a reset error, a timeout."""
    pool = ObjectPool(Resettable, name="parsers", max_size=3, max_idle=1)
    a, b, c = pool.get_many(3)
    with pytest.raises(PoolTimeout):
        pool.get(timeout=0)
    pool.put(a)
    pool.put(b)  # max_idle=1: dropped
    c.fail = True
    with pytest.raises(RuntimeError):
        pool.put(c)
    with pool.borrow():
        pass
    pool.get()  # one stays out
    return pool


def test_object_pool_samples_equal_stats():
    registry = CollectorRegistry()
    pool = busy_object_pool()
    register(pool, registry)
    samples = scrape(registry)
    s = pool.stats()
    lab = labels("parsers", "object")
    for field in ("hits", "misses", "dropped", "reset_errors", "timeouts", "in_use"):
        assert getattr(s, field) > 0, f"the scenario should exercise {field}"
    for field in OBJECT_COUNTERS:
        assert samples[(f"shardpool_{field}_total", lab)] == getattr(s, field), field
    for field in OBJECT_GAUGES:
        assert samples[(f"shardpool_{field}", lab)] == getattr(s, field), field
    assert samples[("shardpool_max_size", lab)] == 3
    kinds = types(registry)
    assert kinds["shardpool_hits"] == "counter"
    assert kinds["shardpool_idle"] == "gauge"


def test_each_scrape_reads_the_pool_anew():
    registry = CollectorRegistry()
    pool = ObjectPool(list, name="lists")
    register(pool, registry)
    assert scrape(registry)[("shardpool_misses_total", labels("lists", "object"))] == 0
    with pool.borrow():
        pass
    with pool.borrow():
        pass
    samples = scrape(registry)
    assert samples[("shardpool_misses_total", labels("lists", "object"))] == 1
    assert samples[("shardpool_hits_total", labels("lists", "object"))] == 1
    assert samples[("shardpool_idle", labels("lists", "object"))] == 1


def test_unbounded_object_pool_has_no_max_size():
    registry = CollectorRegistry()
    register(ObjectPool(list, name="free"), registry)
    assert not [k for k in scrape(registry) if k[0] == "shardpool_max_size"]


def test_block_pool_samples_and_classes_equal_stats():
    registry = CollectorRegistry()
    pool = BlockPool(name="io", max_block=1 << 16)
    with pool.get(100), pool.get(5000):
        pass
    with pool.get(100):
        pass
    held = pool.get(3000)
    with pool.get(1 << 17):  # oversize
        pass
    register(pool, registry)
    samples = scrape(registry)
    s = pool.stats()
    lab = labels("io", "block")
    for field in ("hits", "oversize", "bytes_in_use", "bytes_idle"):
        assert getattr(s, field) > 0, f"the scenario should exercise {field}"
    for field in BLOCK_COUNTERS:
        assert samples[(f"shardpool_{field}_total", lab)] == getattr(s, field), field
    assert samples[("shardpool_idle_bytes", lab)] == s.bytes_idle
    assert samples[("shardpool_in_use_bytes", lab)] == s.bytes_in_use
    assert samples[("shardpool_max_idle_bytes", lab)] == s.max_idle_bytes
    assert samples[("shardpool_idle", lab)] == len(pool)
    assert len(s.classes) >= 2
    for c in s.classes:
        row = labels("io", "block", size=str(c.size))
        assert samples[("shardpool_class_idle", row)] == c.idle
        assert samples[("shardpool_class_in_use", row)] == c.in_use
        assert samples[("shardpool_class_hits_total", row)] == c.hits
        assert samples[("shardpool_class_misses_total", row)] == c.misses
        assert samples[("shardpool_class_dropped_total", row)] == c.dropped
    # Object-pool-only families have no block samples.
    assert ("shardpool_waits_total", lab) not in samples
    held.release()


def test_tiered_pool_samples_per_tier():
    registry = CollectorRegistry()
    pool = TieredPool(bytearray, [(64, 4), (1024, 2)], name="frames")
    with pool.borrow(10), pool.borrow(500):
        pass
    with pool.borrow(20):
        pass
    register(pool, registry)
    samples = scrape(registry)
    s = pool.stats()
    assert samples[("shardpool_hits_total", labels("frames", "tiered"))] == s.hits == 1
    assert samples[("shardpool_misses_total", labels("frames", "tiered"))] == s.misses == 2
    tiers = pool.tier_stats()
    assert sorted(tiers) == [64, 1024]
    for size, t in tiers.items():
        row = labels("frames", "tiered", size=str(size))
        assert samples[("shardpool_class_idle", row)] == t.idle
        assert samples[("shardpool_class_hits_total", row)] == t.hits
        assert samples[("shardpool_class_misses_total", row)] == t.misses


def test_buffer_pool_samples_equal_stats():
    registry = CollectorRegistry()
    pool = BufferPool(name="responses")
    with pool.get() as buf:
        buf.write(b"x" * 100)
    with pool.get():
        pass
    register(pool, registry)
    samples = scrape(registry)
    s = pool.stats()
    lab = labels("responses", "buffer")
    for field in OBJECT_COUNTERS:
        assert samples[(f"shardpool_{field}_total", lab)] == getattr(s, field), field
    assert samples[("shardpool_idle", lab)] == s.idle == 1
    assert samples[("shardpool_hits_total", lab)] == 1


def test_unnamed_pools_get_stable_generated_labels():
    collector = PoolCollector()
    a, b, c = ObjectPool(list), ObjectPool(dict), BlockPool()
    assert collector.add(a) == "object-1"
    assert collector.add(b) == "object-2"
    assert collector.add(c) == "block-1"
    assert collector.add(a) == "object-1"  # adding again changes nothing
    assert collector.labels() == ["object-1", "object-2", "block-1"]


def test_a_named_pool_is_labelled_by_its_name():
    collector = PoolCollector()
    assert collector.add(ObjectPool(list, name="sessions")) == "sessions"
    pool = BufferPool(name="out")
    assert collector.add(pool) == "out" == pool.name


def test_two_live_pools_with_one_name_are_refused():
    collector = PoolCollector()
    first = ObjectPool(list, name="dup")
    collector.add(first)
    with pytest.raises(ValueError, match="dup"):
        collector.add(ObjectPool(list, name="dup"))
    assert collector.labels() == ["dup"]


def test_the_name_of_a_collected_pool_can_be_reused():
    collector = PoolCollector()
    collector.add(ObjectPool(list, name="short-lived"))  # no reference kept
    gc.collect()
    assert collector.add(ObjectPool(list, name="short-lived")) == "short-lived"


def test_the_collector_holds_pools_weakly():
    registry = CollectorRegistry()
    pool = ObjectPool(list, name="gone")
    ref = weakref.ref(pool)
    register(pool, registry)
    assert ("shardpool_idle", labels("gone", "object")) in scrape(registry)
    del pool
    gc.collect()
    assert ref() is None
    assert ("shardpool_idle", labels("gone", "object")) not in scrape(registry)


def test_remove_and_unregister_stop_publishing():
    registry = CollectorRegistry()
    a, b = ObjectPool(list, name="a"), ObjectPool(list, name="b")
    collector = register(a, registry)
    assert register(b, registry) is collector  # one collector per registry
    assert unregister(a, registry) is True
    assert unregister(a, registry) is False
    assert collector.remove(b) is True
    assert collector.remove(b) is False
    assert not [k for k in scrape(registry) if k[0] == "shardpool_idle"]
    assert unregister(a, CollectorRegistry()) is False


def test_registries_are_independent():
    r1, r2 = CollectorRegistry(), CollectorRegistry()
    a, b = ObjectPool(list, name="a"), ObjectPool(list, name="b")
    assert register(a, r1) is not register(b, r2)
    assert {dict(k[1])["pool"] for k in scrape(r1) if k[0] == "shardpool_idle"} == {"a"}
    assert {dict(k[1])["pool"] for k in scrape(r2) if k[0] == "shardpool_idle"} == {"b"}


def test_the_metric_names_are_claimed_at_registration():
    registry = CollectorRegistry()
    registry.register(PoolCollector())
    with pytest.raises(DuplicateTimeseries):
        registry.register(PoolCollector())
    # Registered and empty: the families are described, with no samples.
    text = generate_latest(registry).decode()
    assert "# TYPE shardpool_hits_total counter" in text
    assert "shardpool_hits_total{" not in text


def test_only_pools_are_accepted():
    with pytest.raises(TypeError, match="not a shardpool pool"):
        PoolCollector().add([])  # type: ignore[arg-type]


def test_adds_and_scrapes_from_many_threads():
    registry = CollectorRegistry()
    collector = PoolCollector()
    registry.register(collector)
    pools = [[ObjectPool(list, name=f"t{t}-{i}") for i in range(50)] for t in range(4)]
    errors: list[BaseException] = []
    done = threading.Event()

    def adder(mine: list[ObjectPool[list[object]]]) -> None:
        try:
            for pool in mine:
                collector.add(pool)
                with pool.borrow():
                    pass
        except BaseException as e:
            errors.append(e)

    def scraper() -> None:
        try:
            while not done.is_set():
                scrape(registry)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=adder, args=(p,)) for p in pools]
    watcher = threading.Thread(target=scraper)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    watcher.join()
    assert not errors
    samples = scrape(registry)
    published = {dict(k[1])["pool"] for k in samples if k[0] == "shardpool_puts_total"}
    assert published == {p.name for mine in pools for p in mine}
    assert all(v == 1 for k, v in samples.items() if k[0] == "shardpool_puts_total")


def test_import_without_prometheus_client_says_what_to_install():
    code = (
        "import sys\n"
        "sys.modules['prometheus_client'] = None\n"
        "try:\n"
        "    import shardpool.metrics\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pip install 'shardpool[prometheus]'" in done.stdout


def test_the_metric_table_of_the_guide_names_every_kind_that_has_each_metric():
    """docs/guide/metrics.md lists, per metric, the pool kinds that expose
    it; it once said block pools had no shardpool_in_use."""
    guide = Path(__file__).parent.parent / "docs" / "guide" / "metrics.md"
    documented: dict[str, set[str]] = {}
    for line in guide.read_text().splitlines():
        m = re.match(r"\| `(shardpool_\w+)` \| \w+ \| ([^|]+) \|", line)
        if m:
            kinds = m.group(2).strip()
            documented[m.group(1)] = (
                {"object", "tiered", "block", "buffer"}
                if kinds == "all"
                else {"object"}
                if kinds == "bounded object pools"
                else {k.strip() for k in kinds.split(",")}
            )
    registry = CollectorRegistry()
    pools = {
        "object": ObjectPool(list, max_size=2, name="o"),
        "tiered": TieredPool(bytearray, [16], name="t"),
        "block": BlockPool(name="b"),
        "buffer": BufferPool(name="f"),
    }
    pools["tiered"].put(pools["tiered"].get(10))  # a tier row
    pools["block"].get(10).release()  # a class row
    collector = register(pools["object"], registry)
    for kind in ("tiered", "block", "buffer"):
        collector.add(pools[kind])
    exposed: dict[str, set[str]] = {}
    for name, lbls in scrape(registry):
        family = re.sub(r"_(total|created)$", "", name)
        if family + "_total" in documented:
            family += "_total"
        exposed.setdefault(family, set()).add(dict(lbls)["kind"])
    assert exposed == documented
