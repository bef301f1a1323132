"""Measure shardpool on this machine beside what it should beat.

    python -m shardpool bench [--quick] [--churn] [--json PATH] [--plot PATH]
    python -m shardpool bench --instructions [--case KEY ...] [--json PATH] [--plot PATH]

The default mode times every case in this one process: each group of cases
(shardpool beside the standard library, hand-written pools and the pool
libraries on PyPI) is timed over alternated rounds, and the median round is
shown with the fastest and slowest. Lower is better; ratios are to the first
row of each group.

``--instructions`` counts the instructions of each operation under valgrind
instead: exact, the same on every run, so it decides between two versions of
a hot path where wall-clock noise cannot (see ``shardpool._bench.instructions``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shardpool._bench.references import ClassBorrow, MinimalPool, generator_borrow

if TYPE_CHECKING:
    from shardpool._bench.report import Result

__all__ = ["ClassBorrow", "MinimalPool", "generator_borrow", "main"]

PEERS_HINT = "pip install 'shardpool[bench]' (or, in a source checkout, pip install '.[bench]')"
PLOT_HINT = "pip install 'shardpool[plot]' (or, in a source checkout, pip install '.[plot]')"


def missing_peers() -> list[str]:
    """The pool libraries compared with that are not installed (PyPI names)."""
    from shardpool._bench import cases

    return sorted({c.package for c in cases.peers() if not c.available()})


def peers_note(missing: list[str]) -> str | None:
    """What to tell a reader whose run left out some pool libraries."""
    if not missing:
        return None
    return f"Not measured: {', '.join(missing)} (not installed). Add them with {PEERS_HINT}."


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shardpool bench",
        # No docstrings under python -OO.
        description=(__doc__ or "Measure shardpool on this machine.").splitlines()[0],
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds, less precise")
    parser.add_argument(
        "--churn",
        action="store_true",
        help="only the large-message churn section (throughput and peak RSS)",
    )
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument(
        "--plot", metavar="PATH", help=f"write a PNG chart (needs matplotlib: {PLOT_HINT})"
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per operation under valgrind (exact) instead of timing",
    )
    parser.add_argument(
        "--case",
        action="append",
        default=[],
        metavar="KEY",
        help="with --instructions: only this case (repeatable; 'import' for the import)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="with --instructions: valgrind runs at once (default: 2, or 1 on one CPU)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # Refuse what cannot finish before minutes of measuring, not after.
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        print(f"--plot needs matplotlib, which is not installed: {PLOT_HINT}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.instructions:
        return _instructions(args)
    if args.case:
        parser.error("--case applies to --instructions only")
    if args.churn:
        return _churn(args)
    return _wall_clock(args)


def _instructions(args: argparse.Namespace) -> int:
    from shardpool._bench import instructions, report

    why = instructions.valgrind_missing()
    if why:
        print(why, file=sys.stderr)
        return 2
    try:
        instructions.select(args.case)
    except ValueError as e:
        print(f"--case: {e}", file=sys.stderr)
        return 2
    try:
        m = instructions.run(args.case, args.jobs, sys.stdout)
    except RuntimeError as e:  # a run under valgrind failed: say which, and how
        print(f"\n{e}", file=sys.stderr)
        return 1
    results = instructions.results(m.counted)
    if args.json:
        report.write_json(args.json, "instructions", results, **instructions.json_extra(m))
    if args.plot:
        report.plot(
            results,
            args.plot,
            "python -m shardpool bench --instructions: instructions per operation "
            "(ratios to the deque pop+append pair)",
            "Ir",
            "instructions per operation (Ir, beyond the loop)",
        )
    return 0


def _wall_clock(args: argparse.Namespace) -> int:
    from shardpool._bench import cases, report, wallclock

    rounds, budget, ops = (3, 0.003, 20_000) if args.quick else (9, 0.08, 200_000)
    groups = cases.wall_clock_groups()
    thread_rounds = 3 if args.quick else 5
    bounded_rounds = 3 if args.quick else 7
    churn_rounds, rss_runs = _churn_rounds(args)
    # two thread pairs, the import, memory
    steps = rounds * len(groups) + 4 + bounded_rounds + churn_rounds + rss_runs
    done = 0

    def progress() -> None:
        nonlocal done
        done += 1
        print(f"\rmeasuring... {100 * done // steps:3d}%", end="", file=sys.stderr, flush=True)

    started = time.perf_counter()
    results: list[report.Result] = []
    for group in groups:
        results += wallclock.run_group(group, rounds, budget, progress)
    results += wallclock.thread_results(thread_rounds, ops, progress)
    results += wallclock.bounded_results(bounded_rounds, 0.1 if args.quick else 1.0, progress)
    results += wallclock.import_results(rounds, progress)
    results += wallclock.memory_results(20_000 if args.quick else 10_000_000, progress)
    results += _churn_results(churn_rounds, rss_runs, progress)
    seconds = time.perf_counter() - started
    print(f"\rmeasured in {seconds:.0f} s" + " " * 10, file=sys.stderr)
    print(report.machine_line())
    report.print_table(results, sys.stdout, rounds)
    missing = missing_peers()
    note = peers_note(missing)
    if note:
        print(f"\n{note}")
    if args.json:
        report.write_json(args.json, "wall-clock", results, rounds=rounds, missing_peers=missing)
    if args.plot:
        report.plot(
            results,
            args.plot,
            "python -m shardpool bench: time per operation",
            "ns",
            f"ns per operation, median of {rounds} rounds, bar: fastest to slowest",
        )
    return 0


def _churn_rounds(args: argparse.Namespace) -> tuple[int, int]:
    """Throughput rounds and fresh-interpreter runs of the churn section."""
    return (3, 1) if args.quick else (15, 5)


def _churn_results(rounds: int, runs: int, progress: Callable[[], None]) -> list[Result]:
    from shardpool._bench import churn

    results = churn.throughput_results(rounds, progress)
    if churn.rss_available():
        results += churn.rss_results(runs, 1 if runs == 1 else 3, progress)
    else:  # no /proc: the runs are skipped, and the bar kept honest
        for _ in range(runs):
            progress()
    return results


def _churn(args: argparse.Namespace) -> int:
    """The large-message churn section alone (issue 13's measurement)."""
    from shardpool._bench import report

    rounds, runs = _churn_rounds(args)
    steps = rounds + runs
    done = 0

    def progress() -> None:
        nonlocal done
        done += 1
        print(f"\rmeasuring... {100 * done // steps:3d}%", end="", file=sys.stderr, flush=True)

    results = _churn_results(rounds, runs, progress)
    print("\r" + " " * 20, file=sys.stderr)
    print(report.machine_line())
    report.print_table(results, sys.stdout, rounds)
    if args.json:
        report.write_json(args.json, "wall-clock", results, rounds=rounds)
    return 0
