"""Measurement helpers shared by the scenario examples (not an example itself).

Each scenario example (``http_server.py``, ``json_processing.py``,
``buffer_operations.py``, ``object_creation.py``, ``gc_pressure.py``,
``asyncio_service.py``) runs one of its variants (``--variant``: always
``unpooled`` and ``pooled``, and the best reuse a good developer writes
without a library, such as ``threadlocal``) and reports a
:class:`ScenarioResult` through :func:`parse_args` and :func:`report`, so
``benches/scenarios.py`` and the tests drive the very code a reader runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from queue import SimpleQueue
from types import TracebackType
from typing import Any

from shardpool.metrics import GcMonitor


@dataclass
class GcStats:
    """What the cyclic garbage collector did while a scenario ran, from a ``GcMonitor``.

    Pauses in milliseconds. Wall time is how long the process stood still
    (a collection holds the GIL); CPU time is what the collections cost the
    collecting thread, without the time a busy machine gave other processes.
    """

    collections: list[int] = field(default_factory=lambda: [0, 0, 0])  # per generation
    wall_ms: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    cpu_ms: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    max_wall_ms: float = 0.0
    max_cpu_ms: float = 0.0
    collected: int = 0  # unreachable objects found: garbage only the collector could free

    @classmethod
    def of(cls, monitor: GcMonitor) -> GcStats:
        pauses = monitor.stats()[:3]
        return cls(
            collections=[p.collections for p in pauses],
            wall_ms=[p.wall_seconds * 1e3 for p in pauses],
            cpu_ms=[p.cpu_seconds * 1e3 for p in pauses],
            max_wall_ms=max(p.max_wall_seconds for p in pauses) * 1e3,
            max_cpu_ms=max(p.max_cpu_seconds for p in pauses) * 1e3,
            collected=sum(p.collected for p in pauses),
        )


def rss_now() -> int:
    """Resident set size of this process now, in bytes (Linux; else the peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return rss_peak()


def rss_peak() -> int:
    """High-water resident set size of this process, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS counts bytes


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def minor_faults() -> int:
    """Page faults of this process served without I/O: mostly first touches of new memory."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50, p99 and p99.9 by nearest rank (the sample at or above the rank)."""
    if not samples:
        return {"p50": math.nan, "p99": math.nan, "p999": math.nan}
    ordered = sorted(samples)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

    return {"p50": rank(0.50), "p99": rank(0.99), "p999": rank(0.999)}


def run_tasks(count: int, workers: int, task: Callable[[int], int]) -> tuple[int, array[float]]:
    """Run ``task(0)`` .. ``task(count - 1)`` on a ThreadPoolExecutor of ``workers`` threads.

    Returns the sum of the tasks' results (modulo 2**64) and each task's
    milliseconds. Each worker takes task numbers from a queue and keeps only
    a running sum and an array of floats: submitting one future per task
    would keep thousands of futures alive, and the measurement would be of
    their memory and their garbage collections rather than of the work.
    """
    numbers: SimpleQueue[int | None] = SimpleQueue()
    for i in itertools.chain(range(count), itertools.repeat(None, workers)):
        numbers.put(i)

    def worker() -> tuple[int, array[float]]:
        total, latencies = 0, array("d")
        while (i := numbers.get()) is not None:
            started = time.perf_counter()
            total = (total + task(i)) % 2**64
            latencies.append((time.perf_counter() - started) * 1e3)
        return total, latencies

    with ThreadPoolExecutor(workers) as executor:
        parts = [f.result() for f in [executor.submit(worker) for _ in range(workers)]]
    return sum(t for t, _ in parts) % 2**64, array("d", itertools.chain(*(a for _, a in parts)))


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


@dataclass
class ScenarioResult:
    """One run of one scenario, in one variant, in one process."""

    scenario: str
    variant: str  # "unpooled", "pooled", or a reuse without a library named by the example
    unit: str  # what ``operations`` counts: requests, records, messages, tasks
    operations: int
    seconds: float
    latency_ms: dict[str, float]  # p50, p99, p999 of one operation
    rss_peak_bytes: int  # process high-water mark
    rss_growth_bytes: int  # high-water mark minus the RSS before the scenario's setup
    cpu_seconds: float
    minor_faults: int  # during the measured work
    gc: GcStats
    verified: int  # operations whose output was checked and found right
    checksum: str  # the same in every variant: proof they did the same work
    details: dict[str, Any] = field(default_factory=dict[str, Any])

    @property
    def throughput(self) -> float:
        return self.operations / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["throughput"] = self.throughput
        return d

    def summary(self) -> str:
        lat = self.latency_ms
        g = self.gc
        return (
            f"{self.scenario} [{self.variant}]: {self.operations:,} {self.unit} in "
            f"{self.seconds:.2f} s = {self.throughput:,.0f}/s; latency ms p50 {lat['p50']:.3f} "
            f"p99 {lat['p99']:.3f} p99.9 {lat['p999']:.3f}; RSS peak "
            f"{self.rss_peak_bytes / 2**20:.1f} MiB (+{self.rss_growth_bytes / 2**20:.1f}); "
            f"{self.minor_faults:,} minor faults; GC collections {g.collections} (per "
            f"generation), pauses {sum(g.cpu_ms):.1f} ms CPU, {sum(g.wall_ms):.1f} ms wall; "
            f"{self.verified:,} verified, checksum {self.checksum}"
        )


class Measurement:
    """Measures the body of a ``with`` block: wall and CPU time, GC, page faults, memory.

    Create it before the scenario's setup, so ``rss_growth_bytes`` includes
    what the setup allocates; enter it around the timed work only.
    """

    def __init__(self) -> None:
        self.rss_before = rss_now()
        self.gc = GcMonitor()
        self.seconds = 0.0
        self.cpu = 0.0
        self.faults = 0
        self.rss_peak = 0

    def __enter__(self) -> Measurement:
        self.gc.start()
        self._faults0 = minor_faults()
        self._cpu0 = cpu_seconds()
        self._t0 = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.cpu = cpu_seconds() - self._cpu0
        self.faults = minor_faults() - self._faults0
        self.rss_peak = rss_peak()  # now: what the caller does with the results does not count
        self.gc.stop()

    def result(
        self,
        scenario: str,
        variant: str,
        unit: str,
        operations: int,
        latencies_ms: Sequence[float] | dict[str, float],
        verified: int,
        checksum: str,
        details: dict[str, Any] | None = None,
        seconds: float | None = None,
    ) -> ScenarioResult:
        """The result of the measured block.

        ``latencies_ms`` is one sample per operation, or percentiles already
        computed (the HTTP load generator sends those); ``seconds`` overrides
        the wall time (the load generator times its own window).
        """
        return ScenarioResult(
            scenario=scenario,
            variant=variant,
            unit=unit,
            operations=operations,
            seconds=self.seconds if seconds is None else seconds,
            latency_ms=(
                latencies_ms if isinstance(latencies_ms, dict) else percentiles(latencies_ms)
            ),
            rss_peak_bytes=self.rss_peak,
            rss_growth_bytes=self.rss_peak - self.rss_before,
            cpu_seconds=self.cpu,
            minor_faults=self.faults,
            gc=GcStats.of(self.gc),
            verified=verified,
            checksum=checksum,
            details=details or {},
        )


def parse_args(
    doc: str | None,
    variants: Sequence[str],
    argv: list[str] | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """The command line every scenario example shares; ``extra`` adds its own options."""
    parser = argparse.ArgumentParser(
        description=((doc or "").strip() or "A shardpool scenario.").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--variant", choices=variants, default="pooled", help="what to run (default: pooled)"
    )
    parser.add_argument(
        "--no-pool",
        dest="variant",
        action="store_const",
        const="unpooled",
        help="the same program without pools (--variant unpooled)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--json", metavar="PATH", help="write the result as JSON")
    if extra is not None:
        extra(parser)
    return parser.parse_args(argv)


def report(result: ScenarioResult, json_path: str | None) -> int:
    """Prints the summary, writes the JSON, returns the exit status."""
    print(result.summary())
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result.as_dict(), f, indent=2)
    return 0 if result.verified > 0 else 1
