"""Run the design document's scenarios in every variant, and judge its claims.

    python benches/scenarios.py --out docs/data/scenarios   # everything, 5 rounds
    python benches/scenarios.py --quick                     # a smoke test: one small round
    python benches/scenarios.py --only gc-rows,buffers --rounds 7
    python benches/scenarios.py --report docs/data/scenarios/scenarios.json

Each scenario is an example program (``examples/``) run in several variants:
``unpooled``, ``pooled`` (shardpool) and the best reuse a good developer
writes without a library (``threadlocal``, a shared instance, a per-stream
ring of buffers, a free list), and others where they teach something
(breaking reference cycles by hand, ``gc.freeze()``).

Every run is a fresh process, so its RSS high-water mark is its own. The
variants of a scenario run back to back in a round, in an order rotated
from round to round, so none always runs first or last on a machine whose
load changes. A ratio (variant / unpooled, or pooled / the best reuse) is
taken within each round, then the median over the rounds is shown with the
range: paired ratios survive a shared machine's changing load, which
medians taken per variant over all rounds would not. The figures shown are
those of one round, the one whose pooled / unpooled throughput ratio is the
median.

Each claim of the design document (throughput +30-50%, latency -40-60%,
memory -20-30%, GC pause time -50-70%) is judged on the pooled / unpooled
ratio, in full runs only (3 rounds or more): a quick run is a smoke test
and gives no verdicts. Throughput is judged twice: per second of wall
time, as claimed, and per second of CPU time, which a busy machine's other
processes do not disturb.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BASELINE = "unpooled"
POOLED = "pooled"
MIN_ROUNDS_FOR_VERDICTS = 3


@dataclass(frozen=True)
class Scenario:
    """An example program, the flags that pick its workload, and its variants."""

    name: str
    script: str
    flags: list[str]
    variants: list[str]  # the baseline first, pooled last
    reuse: str  # the best reuse without a library: pooled is compared with it too
    about: str
    extra: list[str] = field(default_factory=list[str])  # labels of EXTRA_METRICS shown


SCENARIOS = [
    Scenario(
        "http",
        "http_server.py",
        [],
        ["unpooled", "threadlocal", "pooled"],
        "threadlocal",
        "HTTP service, 1000 keep-alive connections, 4 worker threads, SQLite backend",
        ["database connections opened", "database connections at most"],
    ),
    Scenario(
        "http-thread-per-connection",
        "http_server.py",
        ["--thread-per-connection"],
        ["unpooled", "threadlocal", "pooled"],
        "threadlocal",
        "the same service with a thread per connection (1000), backend limit 100 connections",
        [
            "answered with the item",
            "answered with the item per CPU second",
            "answered 503",
            "database connections opened",
            "database connections at most",
        ],
    ),
    Scenario(
        "objects",
        "object_creation.py",
        [],
        ["unpooled", "locked-shared", "threadlocal", "pooled"],
        "threadlocal",
        "a costly stateful Tagger per task, 4 threads",
    ),
    Scenario(
        "asyncio",
        "asyncio_service.py",
        [],
        ["unpooled", "freelist", "queue", "pooled"],
        "queue",
        "1000 asyncio clients on one thread, a Tagger held across awaits",
        ["Taggers built"],
    ),
    Scenario(
        "gc-rows",
        "gc_pressure.py",
        ["--workload", "rows"],
        ["unpooled", "manual", "freeze", "threadlocal", "pooled"],
        "threadlocal",
        "requests with 1,000 live row dicts and a request/response cycle, 4 threads",
    ),
    Scenario(
        "gc-cycles",
        "gc_pressure.py",
        ["--workload", "cycles"],
        ["unpooled", "manual", "freeze", "threadlocal", "pooled"],
        "threadlocal",
        "requests whose request/response cycle holds a 256 KiB body, 4 threads",
    ),
    Scenario(
        "buffers",
        "buffer_operations.py",
        [],
        ["unpooled", "ring", "pooled"],
        "ring",
        "256 KiB-4 MiB messages handed from a receiving thread to a checking one, glibc default",
    ),
    Scenario(
        "buffers-mmap",
        "buffer_operations.py",
        ["--mmap-threshold", "131072"],
        ["unpooled", "ring", "pooled"],
        "ring",
        "the same with glibc's mmap threshold fixed at 128 KiB (as allocators that always mmap)",
    ),
    Scenario(
        "json",
        "json_processing.py",
        [],
        ["unpooled", "threadlocal", "pooled"],
        "threadlocal",
        "serialize, checksum and parse back pages of 100 records, 4 threads",
    ),
]
BY_NAME = {s.name: s for s in SCENARIOS}


@dataclass(frozen=True)
class Claim:
    """A claimed ratio range: ``good`` is the bold end, ``fair`` the modest end."""

    text: str
    fair: float
    good: float

    def verdict(self, ratio: float, low: float, high: float) -> str:
        """exceeded, met or missed, judged on the median pooled / unpooled ratio of the rounds.

        A ratio counts as a difference at all only if every round puts it on
        the same side of 1.0 and the median is more than NOISE away from it:
        on a shared machine single rounds swing by more than that.
        """

        def better(r: float, bound: float) -> bool:
            return r >= bound if self.good > 1 else r <= bound

        if low <= 1.0 <= high:
            return "missed: no consistent difference"
        if abs(ratio - 1.0) <= NOISE:
            return f"missed: within {NOISE:.0%}"
        if better(ratio, self.good):
            return "exceeded"
        if better(ratio, self.fair):
            return "met"
        return "missed: better, by less" if better(ratio, 1.0) else "missed: worse"


NOISE = 0.05
THROUGHPUT = Claim("+30-50%", 1.3, 1.5)
LATENCY = Claim("-40-60%", 0.6, 0.4)
MEMORY = Claim("-20-30%", 0.8, 0.7)
GC_PAUSE = Claim("-50-70%", 0.5, 0.3)


@dataclass(frozen=True)
class Metric:
    """One row of a scenario's table: how to read it from a result, and its claim."""

    label: str
    unit: str
    get: Callable[[dict[str, Any]], float | None]
    claim: Claim | None = None


def _mib(key: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda r: r[key] / 2**20


def _detail(key: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda r: r["details"].get(key)


def _gc(key: str, generation: int | None = None) -> Callable[[dict[str, Any]], float]:
    if generation is None:
        return lambda r: sum(r["gc"][key])
    return lambda r: r["gc"][key][generation]


METRICS = [
    Metric("throughput", "/s", lambda r: r["throughput"], THROUGHPUT),
    # The same claim on CPU time: what a busy machine's other processes take
    # from the wall-clock figure, they do not take from this one.
    Metric(
        "throughput per CPU second", "/s", lambda r: r["operations"] / r["cpu_seconds"], THROUGHPUT
    ),
    Metric("latency p50", "ms", lambda r: r["latency_ms"]["p50"], LATENCY),
    Metric("latency p99", "ms", lambda r: r["latency_ms"]["p99"], LATENCY),
    Metric("RSS peak", "MiB", _mib("rss_peak_bytes"), MEMORY),
    Metric("RSS growth", "MiB", _mib("rss_growth_bytes")),
    Metric("minor page faults", "", lambda r: r["minor_faults"]),
    Metric("GC collections gen 0", "", _gc("collections", 0)),
    Metric("GC collections gen 1", "", _gc("collections", 1)),
    Metric("GC collections gen 2", "", _gc("collections", 2)),
    Metric("GC pause total, CPU", "ms", _gc("cpu_ms"), GC_PAUSE),
    Metric("GC pause total, wall", "ms", _gc("wall_ms")),
    Metric("GC pause max, wall", "ms", lambda r: r["gc"]["max_wall_ms"]),
    Metric("CPU per operation", "us", lambda r: r["cpu_seconds"] / r["operations"] * 1e6),
]
EXTRA_METRICS = {
    m.label: m
    for m in [
        # The thread-per-connection service answers refused requests with 503:
        # its throughput claim is judged on the requests answered with the item.
        Metric(
            "answered with the item",
            "/s",
            lambda r: r["details"]["answered_200"] / r["seconds"],
            THROUGHPUT,
        ),
        Metric(
            "answered with the item per CPU second",
            "/s",
            lambda r: r["details"]["answered_200"] / r["cpu_seconds"],
            THROUGHPUT,
        ),
        Metric("answered 503", "%", lambda r: 100 * r["details"]["answered_503"] / r["operations"]),
        Metric("database connections opened", "", _detail("backend_connections_opened")),
        Metric("database connections at most", "", _detail("backend_connections_most")),
        Metric("Taggers built", "", _detail("taggers_built")),
    ]
}


def metrics_of(scenario: Scenario) -> list[Metric]:
    extra = [EXTRA_METRICS[label] for label in scenario.extra]
    if any(m.claim is THROUGHPUT for m in extra):  # judge that one instead of throughput
        return [Metric("throughput", "/s", METRICS[0].get), *extra, *METRICS[2:]]
    return [*METRICS[:2], *extra, *METRICS[2:]]


def run_example(scenario: Scenario, variant: str, quick: bool) -> dict[str, Any]:
    """One run in a fresh process; its ScenarioResult as a dict, with the load average."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(EXAMPLES / scenario.script), *scenario.flags]
        cmd += ["--variant", variant, "--json", str(out)] + ["--quick"] * quick
        load = os.getloadavg()[0]
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
        result: dict[str, Any] = json.loads(out.read_text())
        result["load_average"] = load
        result["process_seconds"] = time.perf_counter() - started
        return result


def rounds_order(variants: list[str], rounds: int) -> Iterator[tuple[int, str]]:
    """Rotate the order from round to round, so no variant always runs first or last."""
    for i in range(rounds):
        k = i % len(variants)
        for v in variants[k:] + variants[:k]:
            yield i, v


def paired_ratios(values: list[float | None], base: list[float | None]) -> list[float]:
    """The ratio of ``values`` to ``base`` in each round where both exist."""
    return [x / y for x, y in zip(values, base, strict=True) if x is not None and y]


def spread(ratios: list[float]) -> dict[str, float]:
    return {"median": statistics.median(ratios), "low": min(ratios), "high": max(ratios)}


def summarize(scenario: Scenario, runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per metric: the figures of one round, and the paired ratios of all rounds.

    The figures shown all come from the round whose pooled / unpooled
    throughput ratio is the median, so they agree with each other; the
    ratios are medians over every round, with their range.
    """
    rounds = len(runs[BASELINE])
    throughput = METRICS[0].get
    by_round = paired_ratios(
        [throughput(r) for r in runs[POOLED]], [throughput(r) for r in runs[BASELINE]]
    )
    shown = by_round.index(statistics.median_low(by_round))
    rows = []
    for m in metrics_of(scenario):
        per_round = {v: [m.get(r) for r in results] for v, results in runs.items()}
        if m.claim is None and not any(x for values in per_round.values() for x in values):
            continue  # zero in every run (no collections, say): a row of zeros says nothing
        row: dict[str, Any] = {
            "metric": m.label,
            "unit": m.unit,
            "round": shown + 1,
            "values": {v: values[shown] for v, values in per_round.items()},
            "ratios": {},
        }
        for variant in scenario.variants[1:]:
            ratios = paired_ratios(per_round[variant], per_round[BASELINE])
            if ratios:
                row["ratios"][variant] = spread(ratios)
        versus = paired_ratios(per_round[POOLED], per_round[scenario.reuse])
        if versus:
            row["pooled_vs_reuse"] = spread(versus)
        if m.claim:
            row["claim"] = m.claim.text
            r = row["ratios"].get(POOLED)
            if rounds < MIN_ROUNDS_FOR_VERDICTS:
                row["verdict"] = ""
            elif r is not None:
                row["verdict"] = m.claim.verdict(r["median"], r["low"], r["high"])
            elif not any(per_round[POOLED]) and not any(per_round[BASELINE]):
                row["verdict"] = "nothing to cut: none in either"
        rows.append(row)
    return rows


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == int(value):
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def fmt_ratio(r: dict[str, float] | None) -> str:
    if r is None:
        return "-"
    if r["low"] == r["high"]:
        return f"{r['median']:.2f}x"
    return f"{r['median']:.2f}x ({r['low']:.2f}-{r['high']:.2f})"


def markdown(scenario: Scenario, s: dict[str, Any], verdicts: bool) -> str:
    """The scenario's table, in Markdown: each figure, and under it its ratio to unpooled."""
    variants = scenario.variants
    head = ["metric", *variants, f"pooled / {scenario.reuse}"]
    head += ["claim", "verdict (pooled / unpooled)"] if verdicts else []
    rows = s["rows"]
    title = (
        f"**{scenario.name}**: {scenario.about}; throughput in {s['unit']}/s; "
        f"figures of round {rows[0]['round']} of {s['rounds']}, then each variant / unpooled "
        "(median of the rounds, and their range)"
    )
    lines = [title, "", "| " + " | ".join(head) + " |"]
    lines.append("|---|" + "---:|" * (len(variants) + 1) + "---|---|" * verdicts)
    for row in rows:
        unit = row["unit"] if row["unit"] not in ("", "/s") else ""
        cells = [f"{row['metric']} ({unit})" if unit else row["metric"]]
        for v in variants:
            figure = fmt(row["values"].get(v))
            ratio = row["ratios"].get(v)
            cells.append(figure if ratio is None else f"{figure}<br>{fmt_ratio(ratio)}")
        cells.append(fmt_ratio(row.get("pooled_vs_reuse")))
        if verdicts:
            cells += [row.get("claim", ""), row.get("verdict", "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if "model name" in line), "")
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "libc": " ".join(platform.libc_ver()),
        "cpu": model,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }


COLORS = {
    "unpooled": "#9e9e9e",
    "pooled": "#1f77b4",
    "threadlocal": "#2ca02c",
    "locked-shared": "#bcbd22",
    "ring": "#2ca02c",
    "freelist": "#ff7f0e",
    "queue": "#2ca02c",
    "manual": "#ff7f0e",
    "freeze": "#9467bd",
}
# The figures chart: per CPU second rather than per wall second, which a busy
# machine's load swings from run to run (the thread-per-connection service
# counts only the requests answered with their item).
CHARTED = [
    ("throughput per CPU second", "answered with the item per CPU second"),
    ("latency p99",),
    ("RSS peak",),
    ("GC pause total, CPU",),
]
XMIN = 0.02  # the ratio chart's left end; smaller ratios (and 0) are drawn there as "<"


def plot(report: dict[str, Any], directory: Path) -> list[Path]:
    """Two PNG charts: the claims against each variant's ratios, and the figures themselves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["scenarios"])
    cols = 3
    nrows = -(-len(names) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 3.1 * nrows), squeeze=False)
    for k, name in enumerate(names):
        ax = axes[k // cols][k % cols]
        s = report["scenarios"][name]
        claimed = [row for row in s["rows"] if row.get("claim")]
        others = BY_NAME[name].variants[1:]
        for i, row in enumerate(claimed):
            lo, hi = sorted(_band(row["claim"]))
            ax.fill_betweenx([i - 0.45, i + 0.45], lo, hi, color="#c7e9c0", zorder=0)
            for j, v in enumerate(others):
                r = row["ratios"].get(v)
                if not r:
                    continue
                y = i - 0.3 + 0.6 * j / max(1, len(others) - 1)
                low, high, median = (max(XMIN, r[k]) for k in ("low", "high", "median"))
                ax.plot([low, high], [y, y], color=COLORS[v], lw=1)
                marker = "<" if r["median"] < XMIN else "o"  # off the scale, 0 included
                ax.plot(median, y, marker, color=COLORS[v], ms=4, label=v if i == 0 else None)
        ax.axvline(1.0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlim(XMIN, 20)
        ax.set_yticks(range(len(claimed)), [row["metric"] for row in claimed], fontsize=7)
        ax.invert_yaxis()
        ax.tick_params(labelsize=7)
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=6, loc="lower right")
    for k in range(len(names), nrows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle(
        "Each variant / unpooled (dot: median of the rounds, line: range; <: 0.02 or less) against"
        " the claim (green); log scale, throughput: right is better, the rest: left"
    )
    fig.tight_layout()
    ratios = directory / "scenarios_ratios.png"
    fig.savefig(ratios, dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(
        len(names), len(CHARTED), figsize=(3.6 * len(CHARTED), 1.5 * len(names)), squeeze=False
    )
    for r_i, name in enumerate(names):
        s = report["scenarios"][name]
        for c_i, labels in enumerate(CHARTED):
            ax = axes[r_i][c_i]
            row = next(r for r in s["rows"] if r["metric"] in labels)
            label = row["metric"]
            variants = [v for v in BY_NAME[name].variants if row["values"].get(v) is not None]
            values = [row["values"][v] for v in variants]
            ax.barh(variants, values, color=[COLORS[v] for v in variants])
            for i, value in enumerate(values):
                ax.annotate(f" {fmt(value)}", (value, i), va="center", fontsize=6)
            ax.set_xlim(0, max(values, default=1) * 1.5 or 1)
            ax.tick_params(labelsize=6)
            ax.set_xticks([])
            ax.invert_yaxis()
            unit = s["unit"] + "/s" if row["unit"] == "/s" else row["unit"]
            short = label.replace("answered with the item", "answered 200").replace(
                "throughput ", ""
            )
            ax.set_title(f"{name}: {short} ({unit})", fontsize=7, loc="left")
    fig.suptitle("The figures of each scenario's median round (lower is better except throughput)")
    fig.tight_layout()
    figures = directory / "scenarios.png"
    fig.savefig(figures, dpi=80)
    plt.close(fig)
    return [ratios, figures]


def _band(text: str) -> tuple[float, float]:
    claim = next(c for c in (THROUGHPUT, LATENCY, MEMORY, GC_PAUSE) if c.text == text)
    return claim.fair, claim.good


def measure(names: list[str], rounds: int, quick: bool) -> dict[str, Any]:
    """Run everything; the raw results of every run, and when and where they were taken."""
    report: dict[str, Any] = {"machine": machine(), "rounds": rounds, "quick": quick}
    report["scenarios"] = {}
    started = time.perf_counter()

    def progress(text: str) -> None:
        print(f"[{time.perf_counter() - started:5.0f} s] {text}", file=sys.stderr, flush=True)

    for name in names:
        scenario = BY_NAME[name]
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in scenario.variants}
        for i, variant in rounds_order(scenario.variants, rounds):
            progress(f"{name} {variant} round {i + 1}")
            runs[variant].append(run_example(scenario, variant, quick))
        checksums = {r["checksum"] for rs in runs.values() for r in rs}
        if len(checksums) != 1:
            raise RuntimeError(f"{name}: the variants did different work: {checksums}")
        report["scenarios"][name] = {
            "unit": runs[BASELINE][0]["unit"],
            "rounds": rounds,
            "runs": runs,
        }
    report["seconds"] = time.perf_counter() - started
    report["machine"]["load_average_at_end"] = os.getloadavg()
    return report


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    verdicts = not report["quick"] and report["rounds"] >= MIN_ROUNDS_FOR_VERDICTS
    loads = [
        r["load_average"]
        for s in report["scenarios"].values()
        for results in s["runs"].values()
        for r in results
    ]
    print(
        f"# Scenarios: {report['rounds']} round(s), {report['seconds']:.0f} s"
        + (" (quick: a smoke test, no verdicts)" if report["quick"] else "")
        + "\n"
    )
    load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-"
    print(
        f"{m['implementation']} {m['python']} on {m['platform']} ({m['libc']}), {m['cpus']} CPUs "
        f"({m['cpu']}); load average {load} over the runs (1-minute, at each run's start)\n"
    )
    if not verdicts:
        print(
            "No verdicts: "
            + ("quick mode is a smoke test" if report["quick"] else "fewer than 3 rounds")
            + "; the ratios below say nothing about the claims.\n"
        )
    for name, s in report["scenarios"].items():
        print(markdown(BY_NAME[name], s, verdicts) + "\n")


def main(argv: list[str] | None = None) -> int:
    # No docstrings under python -OO.
    parser = argparse.ArgumentParser(description=(__doc__ or "The scenarios.").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test: small sizes, 1 round")
    parser.add_argument("--rounds", type=int, help="rounds (default 5; quick: 1)")
    parser.add_argument("--only", help="comma-separated: " + ",".join(BY_NAME))
    parser.add_argument(
        "--out", metavar="DIR", help="write scenarios.json and the two charts (PNG) into DIR"
    )
    parser.add_argument(
        "--report", metavar="JSON", help="measure nothing: print the tables of a saved run"
    )
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.report:
        report = json.loads(Path(args.report).read_text())
    else:
        names = args.only.split(",") if args.only else list(BY_NAME)
        unknown = [n for n in names if n not in BY_NAME]
        if unknown:
            parser.error(f"unknown scenarios: {', '.join(unknown)} (known: {', '.join(BY_NAME)})")
        rounds = args.rounds or (1 if args.quick else 5)
        report = measure(names, rounds, args.quick)
    for name, s in report["scenarios"].items():
        s["rows"] = summarize(BY_NAME[name], s["runs"])
    print_report(report)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "scenarios.json").write_text(json.dumps(report, indent=1) + "\n")
        try:
            paths = plot(report, out)
            print("wrote " + ", ".join(str(p) for p in [out / "scenarios.json", *paths]))
        except ImportError:
            print("charts skipped: matplotlib is not installed (pip install matplotlib)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
