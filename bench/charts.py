"""PNG charts of a results file, written next to it (`python -m bench --json F` calls
this at its end; for a file already there: `python -m bench.charts FILE...`):

    F-drain.png    drain jobs/s per system, median with min-max bars, the bare loop as a line
    F-latency.png  push-to-start p50 and p99 per system (log scale)
    F-io50.png     jobs that wait on I/O: % of the 1,280 jobs/s ceiling per system
    F-scale.png    (a `python -m bench.scale` file) one call's cost against queue depth

A chart whose figures the file lacks is not drawn. Needs matplotlib (the docs extra;
Debian 12: python3-matplotlib 3.6); the pure part (what each bar is) needs nothing.
"""
from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

# The figures' labels carry the run's sizes ("drain 20,000 no-op", "drain 2,000" with --quick):
# matched as patterns, the variant rows ("..., SQLite broker") left out.
DRAIN = re.compile(r"drain [\d,]+ no-op \(jobs/s\)")
P50 = re.compile(r"push-to-start p50 at [\d.,]+ jobs/s \(ms\)")
P99 = re.compile(r"push-to-start p99 at [\d.,]+ jobs/s \(ms\)")
IO50 = re.compile(r"io50: % of the [\d,]+ jobs/s ceiling \(.*\)")
BARE = "bare"
SCALE_CALLS = ("status tail", "find tail", "cancel tail", "cancel middle", "/api/state")
MPQUEUE_COLOUR, PEER_COLOUR, LINE_COLOUR = "#2f6db5", "#9a9a9a", "#c0392b"


def bars(data: dict, figure: re.Pattern) -> list[tuple[str, float, float, float]]:
    """(system, median, min, max) of the numeric samples of the figure whose label
    matches `figure`, one per system that has any."""
    out = []
    for row in data.get("rows", []):
        values = [v for v in row["samples"] if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if figure.fullmatch(row["figure"]) and values:
            out.append((row["system"], statistics.median(values), min(values), max(values)))
    return out


def label(data: dict, system: str) -> str:
    version = data.get("systems", {}).get(system, {}).get("version", "")
    name = system.replace("-", "\n", 1)           # mpqueue-dispatch: two short lines, no overlap
    return f"{name}\n{version}" if version else name


def scale_curves(data: dict) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """broker -> call -> [(depth, median ms)], from a bench.scale results file."""
    curves: dict = {}
    for broker, by_depth in data.get("depths", {}).items():
        for depth, figures in sorted(by_depth.items(), key=lambda kv: int(kv[0])):
            for call in SCALE_CALLS:
                samples = figures.get("ms", {}).get(call)
                if samples:
                    curves.setdefault(broker, {}).setdefault(call, []).append((int(depth), statistics.median(samples)))
    return curves


def _label_of(data: dict, figure: re.Pattern) -> str:
    return next(row["figure"] for row in data["rows"] if figure.fullmatch(row["figure"]))


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _bar_chart(plt, data, figure, ylabel, title, path, log=False, line=None):
    rows = [b for b in bars(data, figure) if b[0] != BARE]
    if not rows:
        return None
    rows.sort(key=lambda b: b[1], reverse=not log)
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=100)
    xs = range(len(rows))
    ax.bar(xs, [b[1] for b in rows], yerr=[[b[1] - b[2] for b in rows], [b[3] - b[1] for b in rows]], capsize=3,
           color=[MPQUEUE_COLOUR if b[0].startswith("mpqueue") else PEER_COLOUR for b in rows])
    ax.set_xticks(list(xs), [label(data, b[0]) for b in rows], fontsize=7)
    if line:
        ax.axhline(line[0], color=LINE_COLOUR, linestyle="--", linewidth=1)
        ax.text(len(rows) - 0.5, line[0], line[1], color=LINE_COLOUR, fontsize=7, ha="right", va="top")
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _drain(plt, data, path):
    bare = [b for b in bars(data, DRAIN) if b[0] == BARE]
    line = (bare[0][1], f"bare loop: {bare[0][1]:,.0f} jobs/s (2 processes doing only the job's INCR)") if bare else None
    if not bars(data, DRAIN):
        return None
    title = f"{_label_of(data, DRAIN).split(' (')[0].capitalize()} jobs (median, min–max over the rounds)"
    return _bar_chart(plt, data, DRAIN, "jobs/s", title, path, line=line)


def _latency(plt, data, path):
    p50, p99 = dict((b[0], b) for b in bars(data, P50)), dict((b[0], b) for b in bars(data, P99))
    systems = sorted(set(p50) & set(p99), key=lambda s: p50[s][1])
    if not systems:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=100)
    width = 0.4
    for offset, table, name, alpha in ((-width / 2, p50, "p50", 1.0), (width / 2, p99, "p99", 0.55)):
        rows = [table[s] for s in systems]
        ax.bar([i + offset for i in range(len(systems))], [b[1] for b in rows], width,
               yerr=[[b[1] - b[2] for b in rows], [b[3] - b[1] for b in rows]], capsize=2, alpha=alpha,
               color=[MPQUEUE_COLOUR if s.startswith("mpqueue") else PEER_COLOUR for s in systems], label=name)
    ax.set_xticks(range(len(systems)), [label(data, s) for s in systems], fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("ms (log scale)")
    rate = _label_of(data, P50).split(" at ")[1].split(" (")[0]
    ax.set_title(f"Push-to-start latency at {rate} to idle workers: p50 (solid) and p99 (pale)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _io50(plt, data, path):
    return _bar_chart(plt, data, IO50, "% of the ceiling", "Jobs that wait 50 ms, 64 at a time: % of the "
                      "1,280 jobs/s ceiling", path, line=(100.0, "ceiling: 64 / 0.05 s"))


def _scale(plt, data, path):
    curves = scale_curves(data)
    if not curves:
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 4), dpi=100, squeeze=False, sharey=True)
    for ax, (broker, calls) in zip(axes[0], sorted(curves.items())):
        for call, points in calls.items():
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=call)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("jobs waiting in the queue")
        ax.set_ylabel("ms per call (median)")
        ax.set_title(f"{broker}: one call's cost at depth", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


CHARTS = {"drain": _drain, "latency": _latency, "io50": _io50, "scale": _scale}


def write(results_path) -> list[Path]:
    """Draw every chart the file has figures for, next to it; returns the PNGs written."""
    results_path = Path(results_path)
    data = json.loads(results_path.read_text())
    plt = _pyplot()
    written = []
    for name, draw in CHARTS.items():
        path = results_path.with_name(f"{results_path.stem}-{name}.png")
        if draw(plt, data, path):
            written.append(path)
    return written


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m bench.charts RESULTS.json...", file=sys.stderr)
        return 2
    for arg in argv:
        for path in write(arg):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
