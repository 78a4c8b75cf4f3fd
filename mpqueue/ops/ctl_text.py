"""Human-readable output of `mpqctl` (tables and detail views); JSON output is in ctl.py."""
from __future__ import annotations

import datetime as dt
import json

from ..brokers.base import COUNT_KEYS


def status_text(counts: dict, nodes: list) -> str:
    rows = [[q + (" (paused)" if c.get("paused") else "") + ("" if c.get("served", True) else " (no workers)")]
            + [c[k] for k in COUNT_KEYS] for q, c in counts.items()]
    text = _table(["QUEUE"] + [k.upper() for k in COUNT_KEYS], rows) if rows else "no queues"
    rows = []
    for n in nodes:
        for q, w in (n.get("queues") or {"-": {}}).items():
            slots = f"{w.get('busy_slots', w.get('busy', 0))}/{w.get('slots', w.get('workers', 0))}"
            rows.append([n.get("host", "?"), n.get("pid", "?"), n.get("service", "?"), q,
                         w.get("workers", 0), w.get("busy", 0), w.get("idle", 0), slots, _heartbeat_cell(n)])
    headers = ["HOST", "PID", "SERVICE", "QUEUE", "WORKERS", "BUSY", "IDLE", "SLOTS BUSY", "HEARTBEAT"]
    return text + "\n\n" + (_table(headers, rows) if rows else "no live nodes")


def _heartbeat_cell(node: dict) -> str:
    """The heartbeat's age, and "gone" when its supervisor is known not to run."""
    return f"{node['heartbeat_age']:.0f}s" + (", gone" if node.get("alive") is False else "")


def _table(headers: list[str], rows: list[list]) -> str:
    """Columns aligned; numbers to the right, text to the left."""
    numeric = [all(isinstance(r[i], (int, float)) for r in rows) for i in range(len(headers))]
    cells = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric)).rstrip()
                     for r in cells)


def failed_text(queue: str, jobs: list, tracebacks: bool) -> str:
    if not jobs:
        return f"no failed jobs in {queue}"
    rows = [[j["id"], j["task"] or "?", j["attempts"], j["error"]["type"] or "?",
             _first_line(j["error"]["message"], 60), _when(j["error"]["at"])] for j in jobs]
    text = _table(["ID", "TASK", "ATTEMPTS", "ERROR", "MESSAGE", "FAILED_AT"], rows)
    if tracebacks:
        for j in jobs:
            tb = (j["error"]["traceback"] or "(no traceback)").rstrip()
            text += f"\n\n--- {j['id']} ({j['task'] or '?'})\n{tb}"
    return text


def _first_line(text, width: int) -> str:
    line = (str(text or "").strip().splitlines() or [""])[0]
    return line if len(line) <= width else line[:width - 3] + "..."


def _when(epoch) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S%z")


def job_text(info: dict) -> str:
    lines = []
    for key, value in info.items():
        if key in ("due_at", "finished_at", "scheduled_for", "cancelled_at"):
            value = _when(value)
        elif key in ("error", "last_error") and value:
            lines.append(f"{key}: {value.get('type')}: {value.get('message')} (at {_when(value.get('at'))})")
            if value.get("traceback"):
                lines.append("  " + value["traceback"].rstrip().replace("\n", "\n  "))
            continue
        elif not isinstance(value, str):
            value = json.dumps(value, ensure_ascii=False)
        lines.append(f"{key}: {value}")
    return "\n".join(lines)
