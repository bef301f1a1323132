"""Large-message churn: a receiver's buffers of 256 KiB-4 MiB.

A fixed-seed sequence of message sizes, spread evenly (in bytes) over
256 KiB-4 MiB. Per message the receiver gets a buffer of exactly ``n``
bytes, fills all ``n`` as ``readinto`` would (a copy from a payload through
a memoryview), reads a byte back and lets the buffer go: from a default
``BlockPool()`` (get, fill, release) or as ``bytearray(n)`` (the reference:
what a receiver writes without a pool).

Two measurements, each judged against the reference:

- throughput, in this process, the two sides' rounds alternated (each round
  is the whole sequence), so a burst of load hits both; the JSON also
  gives the median of the per-round ratios, steadier under load;
- peak RSS, each side alone in a fresh interpreter (``VmHWM``, the kernel's
  high-water mark of the process's resident memory, so a peak between two
  readings is not missed), the runs alternated. Both interpreters import
  shardpool and build the same payload, so they differ only in the churn.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from shardpool._bench.report import Result

LOW = 256 << 10
HIGH = 4 << 20
SEED = 13
MESSAGES = 256
"""Messages per round: about 540 MiB copied, a few tens of ms (long enough
that a scheduling hiccup on a shared machine is a small part of a round)."""

THROUGHPUT = (
    "large-message churn, 256 KiB-4 MiB, get+fill+release "
    "(throughput, messages per second; higher is better)"
)
PEAK_RSS = "large-message churn, 256 KiB-4 MiB: peak RSS of a fresh process (MiB; lower is better)"
SIDES = {"bytearray": "bytearray(n) (the reference)", "blockpool": "BlockPool() (the defaults)"}

Progress = Callable[[], None]


def message_sizes(count: int = MESSAGES, seed: int = SEED) -> list[int]:
    """The sizes of one round, the same on every run."""
    rng = random.Random(seed)
    return [rng.randint(LOW, HIGH) for _ in range(count)]


def churner(side: str) -> Callable[[], int]:
    """One round of churn for ``side``; returns what it read back (so that
    nothing can be skipped)."""
    if side == "bytearray":
        return _churn(bytearray, None)
    if side == "blockpool":
        from shardpool import Block, BlockPool

        return _churn(BlockPool().get, Block.release)
    raise ValueError(f"side must be one of {sorted(SIDES)}, got {side!r}")


def _churn(get: Callable[[int], Any], release: Callable[[Any], object] | None) -> Callable[[], int]:
    """A round: per message, a buffer of ``n`` bytes from ``get(n)``, filled,
    one byte read back, given back with ``release(buffer)`` (if any) and
    dropped. Both sides run this same loop."""
    sizes = message_sizes()
    payload = memoryview(random.Random(SEED).randbytes(HIGH))

    def churn() -> int:
        seen = 0
        for n in sizes:
            b = get(n)
            with memoryview(b) as m:
                m[:] = payload[:n]
                seen += m[n - 1]
            if release is not None:
                release(b)
            del b
        return seen

    return churn


def throughput_results(rounds: int, progress: Progress) -> list[Result]:
    churns = {side: churner(side) for side in SIDES}
    for churn in churns.values():  # first use: the pool's misses, page faults
        churn()
    samples: dict[str, list[float]] = {side: [] for side in SIDES}
    for _ in range(rounds):
        for side, churn in churns.items():
            t0 = time.perf_counter()
            churn()
            samples[side].append(MESSAGES / (time.perf_counter() - t0))
        progress()
    rows = _rows(THROUGHPUT, samples, "msg/s")
    # The ratio within each round (both sides a moment apart), whose median
    # drifts less with the machine's load than the ratio of the medians.
    pairs = [p / b for b, p in zip(samples["bytearray"], samples["blockpool"], strict=True)]
    rows[1].extra["median_ratio_of_rounds"] = statistics.median(pairs)
    return rows


def vm_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (Linux), e.g. ``VmHWM``."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(side: str, rounds: int) -> None:
    """A fresh interpreter's run: prints its RSS before the churn and its
    peak, in KiB, as JSON."""
    churn = churner(side)
    before = vm_kib("VmRSS")
    for _ in range(rounds):
        churn()
    print(json.dumps({"before": before, "peak": vm_kib("VmHWM")}))


def _child_run(side: str, rounds: int) -> dict[str, int]:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from shardpool._bench.churn import child; child({side!r}, {rounds})",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, int] = json.loads(done.stdout)
    return found


def rss_available() -> bool:
    try:
        vm_kib("VmHWM")
    except (OSError, RuntimeError):
        return False
    return True


def rss_results(runs: int, rounds: int, progress: Progress) -> list[Result]:
    """Each side's peak RSS in ``runs`` fresh interpreters, alternated."""
    peaks: dict[str, list[float]] = {side: [] for side in SIDES}
    before: dict[str, list[float]] = {side: [] for side in SIDES}
    for _ in range(runs):
        for side in SIDES:
            found = _child_run(side, rounds)
            peaks[side].append(found["peak"] / 1024)
            before[side].append(found["before"] / 1024)
        progress()
    rows = _rows(PEAK_RSS, peaks, "MiB")
    for row, side in zip(rows, SIDES, strict=True):
        row.extra["rss_before_churn_mib"] = statistics.median(before[side])
    return rows


def _rows(section: str, samples: dict[str, list[float]], unit: str) -> list[Result]:
    rows = [
        Result(
            section,
            SIDES[side],
            statistics.median(found),
            shardpool=side == "blockpool",
            ns_min=min(found),
            ns_max=max(found),
            unit=unit,
            key=f"churn_{side}",
        )
        for side, found in samples.items()
    ]
    rows[0].reference = True
    for r in rows:
        r.ratio = r.ns / rows[0].ns
    return rows
