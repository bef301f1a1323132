"""What the bench prints and writes: the machine line, tables, chart, JSON."""

from __future__ import annotations

import json
import os
import platform
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from shardpool import __version__

SHARDPOOL_MARK = "*"
LEGEND = f"{SHARDPOOL_MARK} marks shardpool; the other rows are what it is measured against."
SHARDPOOL_COLOUR = "#1f6fb4"
REFERENCE_COLOUR = "#a8a8a8"
OTHER_COLOUR = "#d4d4d4"


@dataclass
class Result:
    """One measured row of a table."""

    section: str
    case: str
    ns: float
    """The value: nanoseconds per operation (median of the rounds) unless
    ``unit`` says otherwise."""
    ratio: float = 0.0
    """``ns`` over the section's reference (its first row)."""
    reference: bool = False
    """The row the section's ratios are relative to."""
    shardpool: bool = False
    """A row measuring shardpool (the others are references and peers)."""
    ns_min: float = 0.0
    ns_max: float = 0.0
    """The spread of the rounds (equal to ``ns`` for a single measurement)."""
    unit: str = "ns"
    key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """Everything a reader needs to know which machine produced a result."""
    gil = "free-threaded" if sysconfig.get_config_var("Py_GIL_DISABLED") else "GIL"
    return (
        f"shardpool {__version__} on {platform.python_implementation()} "
        f"{platform.python_version()} ({gil}), {platform.system()} {platform.machine()}, "
        f"{cpu_model()}, {os.cpu_count()} CPUs"
    )


def _scale(value: float, unit: str) -> tuple[float, str]:
    """The divisor and unit to show ``value`` in: µs from 10 000 ns up."""
    if unit == "ns" and value >= 10_000:
        return 1000.0, "µs"
    return 1.0, unit


def _format_value(value: float, unit: str) -> str:
    if unit == "bytes":
        return f"{value:,.0f} bytes"
    if unit == "Ir":  # exact counts: whole instructions
        return f"{value:,.0f} Ir"
    divisor, shown = _scale(value, unit)
    return f"{value / divisor:,.1f} {shown}"


def _format_spread(r: Result) -> str:
    divisor, _ = _scale(r.ns, r.unit)
    return f"[{r.ns_min / divisor:,.1f}-{r.ns_max / divisor:,.1f}]"


def print_table(results: Sequence[Result], out: TextIO, rounds: int) -> None:
    """The wall-clock tables: one per section, shardpool's rows marked."""
    print(
        f"Time per operation: the median of {rounds} alternated rounds, [the fastest-the slowest]."
        "\nLower is better, unless a section says otherwise."
        " Ratios are to the first row of each group.",
        file=out,
    )
    print(LEGEND, file=out)
    for section, rows in group_by_section(results).items():
        unit = rows[0].unit
        print(f"\n{section}", file=out)
        width = max(len(r.case) for r in rows) + 2
        for r in rows:
            label = f"{SHARDPOOL_MARK if r.shardpool else ' '} {r.case}"
            value = _format_value(r.ns, unit)
            if unit == "bytes":
                print(f"  {label:<{width}}  {value:>16}", file=out)
                continue
            spread = _format_spread(r)
            mark = "reference" if r.reference else f"{r.ratio:.2f}x"
            print(f"  {label:<{width}}  {value:>12}  {spread:>17}  {mark:>9}", file=out)


def group_by_section(results: Iterable[Result]) -> dict[str, list[Result]]:
    sections: dict[str, list[Result]] = {}
    for r in results:
        sections.setdefault(r.section, []).append(r)
    return sections


def write_json(path: str, mode: str, results: Sequence[Result], **extra: Any) -> None:
    with open(path, "w") as f:
        json.dump(
            {
                "mode": mode,
                "machine": machine_line(),
                "version": __version__,
                "python": platform.python_version(),
                "platform": platform.machine(),
                **extra,
                "results": [asdict(r) for r in results],
            },
            f,
            indent=2,
        )
        f.write("\n")


def plot(results: Sequence[Result], path: str, title: str, unit: str, unit_label: str) -> None:
    """A horizontal bar chart per section: shardpool in colour, the rest grey.

    Bars grow from 1 on a log axis, so lengths compare honestly across the
    orders of magnitude between a deque pair and a 16 MiB ``bytearray``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    sections = {s: rows for s, rows in group_by_section(results).items() if rows[0].unit == unit}
    rows_total = sum(len(rows) for rows in sections.values())
    height = 1.6 + 0.34 * rows_total + 0.55 * len(sections)
    fig, axes = plt.subplots(
        len(sections),
        1,
        figsize=(10, height),
        squeeze=False,
        gridspec_kw={"height_ratios": [len(rows) + 1 for rows in sections.values()]},
    )
    for ax, (section, rows) in zip(axes[:, 0], sections.items(), strict=True):
        colours = [
            SHARDPOOL_COLOUR if r.shardpool else REFERENCE_COLOUR if r.reference else OTHER_COLOUR
            for r in rows
        ]
        labels = [f"{SHARDPOOL_MARK} {r.case}" if r.shardpool else r.case for r in rows]
        ax.barh(labels, [r.ns for r in rows], color=colours, edgecolor="#555555", linewidth=0.4)
        for i, r in enumerate(rows):
            ratio = "reference" if r.reference else f"{r.ratio:.2f}x"
            ax.annotate(
                f" {_format_value(r.ns, r.unit)}  ({ratio})",
                (max(r.ns, r.ns_max), i),
                va="center",
                fontsize=7,
            )
            if r.ns_max > r.ns_min:
                ax.plot([r.ns_min, r.ns_max], [i, i], color="#333333", linewidth=0.8)
        for tick, r in zip(ax.get_yticklabels(), rows, strict=True):
            if r.shardpool:
                tick.set_fontweight("bold")
        ax.set_title(section, fontsize=9, loc="left")
        ax.set_xscale("log")
        ax.set_xlim(1, max(max(r.ns, r.ns_max) for r in rows) * 100)
        ax.tick_params(labelsize=8)
        ax.invert_yaxis()
    axes[-1, 0].set_xlabel(f"{unit_label} (log scale; lower is better)")
    fig.suptitle(f"{title}\n{machine_line()}", fontsize=10)
    fig.legend(
        handles=[
            Patch(color=SHARDPOOL_COLOUR, label="shardpool"),
            Patch(color=REFERENCE_COLOUR, label="reference of its group (ratio 1.00x)"),
            Patch(color=OTHER_COLOUR, label="what users write or use instead"),
        ],
        loc="lower center",
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    # Room for the two-line title above and the legend below (in inches).
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1 - 0.6 / height))
    fig.savefig(path, dpi=110)
    plt.close(fig)
