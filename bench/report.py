"""The table: one row per figure, one column per system, "median (min–max)" over the
rounds, and mpqueue over the best peer per row."""
from __future__ import annotations

import os
import statistics

from .common import fmt
from .workloads import COUNT, HIGHER, INFO, LOWER, TEXT, rows

MAIN = "mpqueue"


def numbers(samples) -> list[float]:
    return [v for v in samples if isinstance(v, (int, float)) and not isinstance(v, bool)]


def cell(samples, direction: str) -> str:
    """median (min–max) of the numeric samples; failures and states as text."""
    if not samples:
        return ""
    if all(v is None for v in samples):
        return "n/a"
    texts = [v for v in samples if isinstance(v, str)]
    if direction == TEXT:
        counts = {t: texts.count(t) for t in dict.fromkeys(texts)}
        if len(counts) == 1:
            return next(iter(counts))
        return "; ".join(f"{t} ({c}/{len(samples)})" for t, c in counts.items())
    vals = numbers(samples)
    if not vals:
        return "; ".join(dict.fromkeys(texts)) or "n/a"
    show = fmt_count if direction in (COUNT, INFO) else fmt
    med = statistics.median(vals)
    out = show(med) if len(vals) == 1 or min(vals) == max(vals) else \
        f"{show(med)} ({show(min(vals))}–{show(max(vals))})"
    if texts:
        out += f" [{len(texts)} of {len(samples)} rounds: {'; '.join(dict.fromkeys(texts))}]"
    return out


def fmt_count(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def ratio(direction: str, ours: list, peers: dict[str, list]) -> str:
    """mpqueue's median over the best peer's: the highest for higher-is-better rows,
    the lowest for the rest; and whether that is a lead."""
    if direction in (INFO, TEXT):
        return ""
    mine = numbers(ours)
    medians = {name: statistics.median(numbers(v)) for name, v in peers.items() if numbers(v)}
    if not mine or not medians:
        return ""
    ours_m = statistics.median(mine)
    best = (max if direction == HIGHER else min)(medians, key=medians.get)
    theirs = medians[best]
    if direction == HIGHER:
        lead = ours_m > theirs
    else:
        lead = ours_m < theirs
    verdict = "leads" if lead else ("ties" if ours_m == theirs else "behind")
    if direction == COUNT:
        return f"{fmt_count(ours_m)} vs {fmt_count(theirs)} ({best}): {verdict}"
    if theirs > 0 and ours_m > 0:
        return f"{ours_m / theirs:.2f} ({best}): {verdict}"
    return f"{fmt(ours_m)} vs {fmt(theirs)} ({best}): {verdict}"


def table(results: dict, systems: list, sizes) -> str:
    """results: {(row, system name): [samples]}; systems: the System objects run."""
    columns = list(dict.fromkeys(s.column for s in systems))
    versions = {s.column: s.version for s in systems if s.variant is None}
    for s in systems:
        versions.setdefault(s.column, s.version)
    head = "| figure | " + " | ".join(f"{c} {versions[c]}" for c in columns) + " | mpqueue / best peer |"
    lines = [head, "|---|" + "---:|" * len(columns) + "---|"]
    main = [s for s in systems if s.variant is None]
    variants = [s for s in systems if s.variant is not None]
    for _, label, direction in rows(sizes):
        peers = {s.name: results[(label, s.name)] for s in systems
                 if s.column != MAIN and not s.reference and (label, s.name) in results}
        if any((label, s.name) in results for s in main):
            cells = [next((cell(results[(label, s.name)], direction) for s in main
                           if s.column == c and (label, s.name) in results), "") for c in columns]
            ours = next((results[(label, s.name)] for s in main if s.name == MAIN and (label, s.name) in results), [])
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {ratio(direction, ours, peers)} |")
        for v in variants:
            if (label, v.name) not in results or all(x is None for x in results[(label, v.name)]):
                continue    # not measured, or n/a for this variant (a SQLite broker's Redis figures)
            cells = [cell(results[(label, v.name)], direction) if c == v.column else "" for c in columns]
            mine = results[(label, v.name)] if v.column == MAIN else []
            lines.append(f"| {label}, {v.variant} | " + " | ".join(cells) +
                         f" | {ratio(direction, mine, peers)} |")
    return "\n".join(lines)


def versus(results: dict, systems: list, sizes) -> str:
    """The rows that name others to compare with (`versus`: the Sentinel and Cluster
    rows against the single Redis of the same run, the durable rows against the
    same deployment without the setting): one column per pair, its median over
    the other's, for the jobs/s and ms rows. Empty when no such pair ran."""
    by_name = {s.name: s for s in systems}
    pairs = [(s.name, other) for s in systems for other in getattr(s, "versus", ()) if other in by_name]
    if not pairs:
        return ""
    lines = ["| figure (median over median, same run) | " + " | ".join(f"{a} / {b}" for a, b in pairs) + " |",
             "|---|" + "---:|" * len(pairs)]
    for _, label, direction in rows(sizes):
        if direction not in (HIGHER, LOWER):
            continue
        cells = []
        for a, b in pairs:
            mine, theirs = numbers(results.get((label, a), [])), numbers(results.get((label, b), []))
            ok = mine and theirs and statistics.median(theirs) > 0
            cells.append(f"{statistics.median(mine) / statistics.median(theirs):.2f}" if ok else "")
        if any(cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cluster_estimate(results: dict, systems: list, sizes) -> str:
    """What N masters on N machines would give, from the Cluster row's per-master
    figures and the single-Redis row of the same run: an estimate, said so, with
    its assumptions (bench/README.md, "Beyond one Redis"). Empty without both rows."""
    from .workloads import labels
    rate, _, _, _, _, machine, _, busiest, per_job, _ = labels("drain", sizes)

    def median(label, name):
        vals = numbers(results.get((label, name), []))
        return statistics.median(vals) if vals else None

    names = {s.name for s in systems}
    single, cluster = median(rate, "mpqueue"), median(rate, "mpqueue-cluster")
    hottest, cost = median(busiest, "mpqueue-cluster"), median(per_job, "mpqueue-cluster")
    busy = median(machine, "mpqueue-cluster")
    if "mpqueue" not in names or None in (single, cluster, hottest, cost, busy) or not cost:
        return ""
    ceiling = 1e6 / cost
    return (f"Cluster on this machine: 3 masters drained {cluster:,.0f} jobs/s together, {cluster / 3:,.0f} per "
            f"master, the busiest master at {hottest:.0f}% of one core while the machine was {busy:.0f}% busy: "
            f"no master is near its ceiling; the {os.cpu_count()} cores that every master, replica, worker and "
            "the results server share are what the drain waits for. A master "
            f"spends {cost:.0f} µs of CPU per job of its queue, so its one command thread would saturate near "
            f"{ceiling:,.0f} jobs/s. Estimate (not measured): N masters on N machines like this one, each running "
            f"one master and its queue's 2 workers (as this machine runs the single-Redis row; replicas and "
            f"producers elsewhere), give about N × {single:,.0f} jobs/s (the single-Redis drain of this run), "
            f"{3 * single:,.0f} for N = 3; with workers on machines of their own, up to N × {ceiling:,.0f}. "
            "It assumes the queues are equally loaded and a network round trip close to loopback's: each job "
            "costs its worker round trips, so a slower network lowers the rate per worker, not the scaling in N.")
