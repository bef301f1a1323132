"""Run the four scenarios of the design document pooled and unpooled, and compare.

    python benches/scenarios.py                          # everything, 5 rounds (4-7 min)
    python benches/scenarios.py --json docs/scenarios.json --plot docs
    python benches/scenarios.py --quick                  # one small round (~40 s)
    python benches/scenarios.py --only http,json --rounds 9

Every run of a scenario is a fresh process (the example script with
``--json``), so the RSS high-water mark belongs to that variant alone. The
variants of a scenario run back to back, alternating which goes first from
round to round; each figure is the median over the rounds and each ratio
the median of the per-round ratios (pooled / unpooled of the same round),
with their range beside it. One more run per variant, at the quick size,
with ``--tracemalloc`` measures the peak of Python heap allocations: tracing
slows allocation-heavy code ten times and more, and the peak is the working
set of the scenario, which does not grow with the number of operations.
Where ``wrk`` is installed, it loads the HTTP server too (one run per
variant), as a check on the Python load generator.

Each ratio is judged against the claim of the design document: throughput
+30-50%, latency -40-60%, memory -20-30%, GC pause time -50-70%.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

SCENARIOS: dict[str, tuple[str, list[str]]] = {
    # name: (script, variants); "unpooled" is the baseline of every ratio
    "http": ("http_server.py", ["unpooled", "pooled", "pooled-except-backend"]),
    "json": ("json_processing.py", ["unpooled", "pooled"]),
    "buffers": ("buffer_operations.py", ["unpooled", "pooled"]),
    "objects": ("object_creation.py", ["unpooled", "pooled"]),
}
FLAGS = {
    "unpooled": ["--no-pool"],
    "pooled": [],
    "pooled-except-backend": ["--pool-except-backend"],
}


@dataclass(frozen=True)
class Claim:
    """A claimed ratio range: ``good`` is the bold end, ``fair`` the modest end."""

    text: str
    fair: float
    good: float

    def verdict(self, ratio: float, low: float, high: float) -> str:
        """exceeded, met or missed, judged on the median ratio of the rounds.

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
    return lambda r: None if r.get(key) is None else r[key] / 2**20


METRICS = [
    Metric("throughput", "/s", lambda r: r["throughput"], THROUGHPUT),
    Metric("latency p50", "ms", lambda r: r["latency_ms"]["p50"], LATENCY),
    Metric("latency p99", "ms", lambda r: r["latency_ms"]["p99"], LATENCY),
    Metric("latency p99.9", "ms", lambda r: r["latency_ms"]["p999"], LATENCY),
    Metric("RSS peak", "MiB", _mib("rss_peak_bytes"), MEMORY),
    Metric("RSS growth", "MiB", _mib("rss_growth_bytes"), MEMORY),
    # tracemalloc sees Python's allocator only: not pooled Blocks and Buffers (Rust memory).
    Metric("tracemalloc peak", "MiB", _mib("traced_peak_bytes")),
    Metric("GC collections", "", lambda r: r["gc"]["collections"]),
    Metric("GC pause total", "ms", lambda r: r["gc"]["total_pause_ms"], GC_PAUSE),
    Metric("GC pause max", "ms", lambda r: r["gc"]["max_pause_ms"], GC_PAUSE),
    Metric("CPU per operation", "us", lambda r: r["cpu_seconds"] / r["operations"] * 1e6),
]
# Measured in the separate tracemalloc run; the other rows come from the timed rounds.
TRACED_ONLY = {"tracemalloc peak"}


def run_example(scenario: str, variant: str, quick: bool, traced: bool) -> dict[str, Any]:
    """One run in a fresh process; its ScenarioResult as a dict."""
    script, _ = SCENARIOS[scenario]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(EXAMPLES / script), *FLAGS[variant], "--json", str(out)]
        cmd += ["--quick"] * quick + ["--tracemalloc"] * traced
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
        result: dict[str, Any] = json.loads(out.read_text())
        return result


WRK_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/items/" .. ((counter * 7919) % 10000))
end
"""


def run_wrk(variant: str, seconds: int, connections: int) -> dict[str, Any]:
    """Serve with the example in its own process and load it with wrk; wrk's figures."""
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "http_server.py"), *FLAGS[variant], "--serve", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1].rsplit("/items", 1)[0] + "/"
        with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
            lua.write(WRK_SCRIPT)
            lua.flush()
            cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", lua.name]
            out = subprocess.run(
                [*cmd, url], capture_output=True, text=True, timeout=seconds + 60, check=True
            ).stdout
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)

    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    return {
        "variant": variant,
        "throughput": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        "latency_ms": {"p50": ms(latency["50"]), "p99": ms(latency["99"])},
        "errors": errors[0] if errors else "",
        "output": out,
    }


def rounds_order(variants: list[str], rounds: int) -> Iterator[tuple[int, str]]:
    """Alternate which variant goes first, so neither always runs on a warmer machine."""
    for i in range(rounds):
        for v in variants if i % 2 == 0 else variants[::-1]:
            yield i, v


def paired_ratios(values: list[float | None], base: list[float | None]) -> dict[int, float]:
    """Round number -> ratio of ``values`` to ``base`` in that round (where both exist)."""
    return {
        i: x / y for i, (x, y) in enumerate(zip(values, base, strict=True)) if x is not None and y
    }


def summarize(
    runs: dict[str, list[dict[str, Any]]], traced: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per metric: the figures of one round, and ratios against unpooled.

    The variants of a round run back to back, so a ratio within a round
    compares like with like even when the load of the machine changes
    between rounds; medians taken per variant over all rounds would not
    (they may come from different rounds and disagree with the ratio). So a
    ratio is the median of the rounds' ratios, with their range, and the
    figures shown are all from one round, the one whose pooled / unpooled
    throughput ratio is the median.
    """
    throughput = METRICS[0].get
    shown_ratios = paired_ratios(
        [throughput(r) for r in runs["pooled"]], [throughput(r) for r in runs["unpooled"]]
    )
    median = statistics.median_low(shown_ratios.values())
    shown = next(i for i, r in shown_ratios.items() if r == median)
    rows = []
    for m in METRICS:
        row: dict[str, Any] = {"metric": m.label, "unit": m.unit, "round": shown + 1}
        if m.label in TRACED_ONLY:  # one traced run per variant
            per_round = {v: [m.get(traced[v]) if v in traced else None] for v in runs}
            row["values"] = {v: values[0] for v, values in per_round.items()}
        else:
            per_round = {v: [m.get(r) for r in results] for v, results in runs.items()}
            row["values"] = {v: values[shown] for v, values in per_round.items()}
        row["ratios"] = {}
        for variant, values in per_round.items():
            ratios = paired_ratios(values, per_round["unpooled"])
            if variant != "unpooled" and ratios:
                row["ratios"][variant] = {
                    "median": statistics.median(ratios.values()),
                    "low": min(ratios.values()),
                    "high": max(ratios.values()),
                }
        if m.claim:
            row["claim"] = m.claim.text
            if "pooled" in row["ratios"]:
                r = row["ratios"]["pooled"]
                row["verdict"] = m.claim.verdict(r["median"], r["low"], r["high"])
            elif not any(per_round["pooled"]) and not any(per_round["unpooled"]):
                row["verdict"] = "none in either"
        rows.append(row)
    return rows


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == int(value):
        return f"{int(value):,}"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value < 10 else f"{value:.1f}"


def markdown(scenario: str, unit: str, rows: list[dict[str, Any]], variants: list[str]) -> str:
    """The scenario's table, in Markdown."""
    others = [v for v in variants if v != "unpooled"]
    head = ["metric", *variants, *(f"{v} / unpooled" for v in others), "claim", "verdict"]
    title = f"**{scenario}** (throughput in {unit}/s; figures of round {rows[0]['round']})"
    lines = [title, "", "| " + " | ".join(head) + " |"]
    lines.append("|---|" + "---:|" * (len(variants) + len(others)) + "---|---|")
    for row in rows:
        label = (
            f"{row['metric']} ({row['unit']})"
            if row["unit"] and row["unit"] != "/s"
            else (row["metric"])
        )
        cells = [label, *(fmt(row["values"].get(v)) for v in variants)]
        for v in others:
            r = row["ratios"].get(v)
            if r is None:
                cells.append("-")
            elif r["low"] == r["high"]:
                cells.append(f"{r['median']:.2f}")
            else:
                cells.append(f"{r['median']:.2f} ({r['low']:.2f}-{r['high']:.2f})")
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
        "cpu": model,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }


def plot(report: dict[str, Any], directory: Path) -> list[Path]:
    """Two PNG charts: the figures side by side, and the ratios against the claims."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"unpooled": "#9e9e9e", "pooled": "#1f77b4", "pooled-except-backend": "#9ecae1"}
    shown = [m for m in METRICS if m.label not in ("CPU per operation", "GC collections")]
    scenarios = list(report["scenarios"])
    fig, axes = plt.subplots(
        len(shown), len(scenarios), figsize=(3.4 * len(scenarios), 1.55 * len(shown)), squeeze=False
    )
    for col, name in enumerate(scenarios):
        s = report["scenarios"][name]
        for row_i, metric in enumerate(shown):
            ax = axes[row_i][col]
            row = next(r for r in s["rows"] if r["metric"] == metric.label)
            variants = [v for v in s["variants"] if row["values"].get(v) is not None]
            values = [row["values"][v] for v in variants]
            ax.barh(variants, values, color=[colors[v] for v in variants])
            for i, value in enumerate(values):
                ax.annotate(f" {fmt(value)}", (value, i), va="center", fontsize=7)
            ax.set_xlim(0, max(values, default=1) * 1.45 or 1)
            ax.tick_params(labelsize=7)
            ax.set_xticks([])
            ax.invert_yaxis()
            if col:
                ax.set_yticks([])
            unit = s["unit"] + "/s" if metric.unit == "/s" else metric.unit
            ax.set_title(f"{name}: {metric.label} ({unit})", fontsize=8, loc="left")
    fig.suptitle(
        "Scenarios, pooled vs unpooled: the round with the median throughput ratio"
        " (lower is better except throughput)"
    )
    fig.tight_layout()
    figures = directory / "scenarios.png"
    fig.savefig(figures, dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(scenarios), figsize=(3.6 * len(scenarios), 4.2), squeeze=False)
    claimed = [m for m in METRICS if m.claim]
    for col, name in enumerate(scenarios):
        ax = axes[0][col]
        s = report["scenarios"][name]
        for i, metric in enumerate(claimed):
            row = next(r for r in s["rows"] if r["metric"] == metric.label)
            assert metric.claim is not None
            lo, hi = sorted((metric.claim.fair, metric.claim.good))
            ax.fill_betweenx([i - 0.4, i + 0.4], lo, hi, color="#c7e9c0", zorder=0)
            ratio = row["ratios"].get("pooled")
            if ratio:
                ax.plot([ratio["low"], ratio["high"]], [i, i], color="#1f77b4", lw=1)
                ax.plot(ratio["median"], i, "o", color="#1f77b4")
                ax.annotate(
                    f"{ratio['median']:.2f}",
                    (ratio["median"], i),
                    xytext=(4, 4),
                    textcoords="offset points",
                    fontsize=7,
                )
        ax.axvline(1.0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlim(0.1, 10)
        ax.set_yticks(range(len(claimed)), [m.label for m in claimed] if col == 0 else [])
        ax.invert_yaxis()
        ax.tick_params(labelsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(
            "pooled / unpooled (log); throughput: right is better, rest: left", fontsize=7
        )
    fig.suptitle(
        "Pooled / unpooled ratio (dot: median, line: range over rounds) and the claim (green)"
    )
    fig.tight_layout()
    ratios = directory / "scenarios_ratios.png"
    fig.savefig(ratios, dpi=100)
    plt.close(fig)
    return [figures, ratios]


def measure(names: list[str], rounds: int, quick: bool, traced: bool, wrk: bool) -> dict[str, Any]:
    """Run everything; the raw results of every run, and when and where they were taken."""
    report: dict[str, Any] = {"machine": machine(), "rounds": rounds, "quick": quick}
    report["scenarios"] = {}
    started = time.perf_counter()

    def progress(text: str) -> None:
        print(f"[{time.perf_counter() - started:5.0f} s] {text}", file=sys.stderr, flush=True)

    for name in names:
        _, variants = SCENARIOS[name]
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
        for i, variant in rounds_order(variants, rounds):
            progress(f"{name} {variant} round {i + 1}")
            runs[variant].append(run_example(name, variant, quick, traced=False))
        traced_runs: dict[str, dict[str, Any]] = {}
        for variant in variants if traced else []:
            progress(f"{name} {variant} traced")
            traced_runs[variant] = run_example(name, variant, quick=True, traced=True)
        checksums = {r["checksum"] for rs in runs.values() for r in rs}
        if len(checksums) != 1:
            raise RuntimeError(f"{name}: the variants did different work: {checksums}")
        report["scenarios"][name] = {
            "unit": runs["unpooled"][0]["unit"],
            "variants": variants,
            "runs": runs,
            "traced": traced_runs,
        }
    if "http" in names and wrk and shutil.which("wrk"):
        progress("http under wrk")
        seconds = 2 if quick else 6
        report["wrk"] = [run_wrk(v, seconds, 1000) for v in ("unpooled", "pooled")]
    report["seconds"] = time.perf_counter() - started
    report["machine"]["load_average_at_end"] = os.getloadavg()
    return report


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(
        f"# Scenarios: pooled vs unpooled, {report['rounds']} round(s), {report['seconds']:.0f} s\n"
    )
    print(
        f"{m['implementation']} {m['python']} on {m['platform']}, {m['cpus']} CPUs ({m['cpu']}); "
        f"load average {m['load_average_at_start'][0]:.1f} at start, "
        f"{m['load_average_at_end'][0]:.1f} at end\n"
    )
    for name, s in report["scenarios"].items():
        print(markdown(name, s["unit"], s["rows"], s["variants"]) + "\n")
    if "wrk" in report:
        print("**http under wrk** (-t2 -c1000, one run each)\n")
        print("| variant | requests/s | latency p50 (ms) | latency p99 (ms) | errors |")
        print("|---|---:|---:|---:|---|")
        for w in report["wrk"]:
            lat = w["latency_ms"]
            print(
                f"| {w['variant']} | {w['throughput']:,.0f} | {fmt(lat['p50'])} | "
                f"{fmt(lat['p99'])} | {w['errors'] or 'none'} |"
            )
        print()


def main(argv: list[str] | None = None) -> int:
    # No docstrings under python -OO.
    parser = argparse.ArgumentParser(description=(__doc__ or "The scenarios.").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--rounds", type=int, help="timed rounds per variant (default 5, quick 1)")
    parser.add_argument("--only", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the traced runs")
    parser.add_argument("--no-wrk", action="store_true", help="do not load the server with wrk")
    parser.add_argument("--json", metavar="PATH", help="write every result as JSON")
    parser.add_argument("--plot", metavar="DIR", help="write the two PNG charts into DIR")
    parser.add_argument(
        "--report", metavar="PATH", help="measure nothing: report a JSON written by --json"
    )
    args = parser.parse_args(argv)
    if args.report:
        report = json.loads(Path(args.report).read_text())
    else:
        rounds = args.rounds or (1 if args.quick else 5)
        names = args.only.split(",") if args.only else list(SCENARIOS)
        unknown = set(names) - set(SCENARIOS)
        if unknown:
            parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
        report = measure(names, rounds, args.quick, not args.no_tracemalloc, not args.no_wrk)
    for s in report["scenarios"].values():
        s["rows"] = summarize(s["runs"], s["traced"])
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if args.plot:
        try:
            paths = plot(report, Path(args.plot))
            print("charts: " + ", ".join(str(p) for p in paths))
        except ImportError:
            print("charts skipped: matplotlib is not installed (pip install matplotlib)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
