"""What the code says, for the reference pages (mpqueue_reference.py renders it):
the configuration keys of core/schema.py's tables, the metric families the endpoint
renders, the failure types, the exit statuses of ipc.py and the Redis key layout.
Pure Python, no Sphinx: tests/unit/test_docs_reference.py checks these against the code."""
from __future__ import annotations

import os
import re
from dataclasses import MISSING
from pathlib import Path

from mpqueue import ipc, tally
from mpqueue.core import schema

ROOT = Path(schema.__file__).resolve().parents[2]
TABLES = {"SERVICE_KEYS": "", "QUEUE_KEYS": "queues.NAME", "LOG_KEYS": "log", "METRICS_KEYS": "metrics",
          "WEB_KEYS": "web"}
EXIT_NAME = re.compile(r"^(EX(?:IT)?_\w+) = (\w+)\s*(?:#\s*(.*))?$", re.M)


def type_name(t) -> str:
    """The YAML type of a config field's Python type."""
    names = {str: "string", int: "integer", float: "number (seconds)", bool: "boolean", dict: "mapping",
             tuple[str, ...]: "a string or a list of strings", str | None: "string or null",
             schema.FrameworkConfig | None: "mapping or null"}
    if t in names:
        return names[t]
    return "mapping"            # a section (LogConfig, ...) or defaults, which has no field


def default_text(key: schema.Key) -> str:
    if key.required:
        return "none: required"
    if key.default is MISSING:
        return "the file name without .yaml"
    if key.default is None:
        return "null"
    if key.section or isinstance(key.default, dict):
        return "(see its keys)" if key.section else "{}"
    if key.default is None:
        return "null"
    if isinstance(key.default, bool):
        return "true" if key.default else "false"
    if key.default == ():
        return "[]"
    return repr(key.default) if isinstance(key.default, str) else f"{key.default:g}" \
        if isinstance(key.default, float) else str(key.default)


def key_rows(table: str) -> list[dict]:
    """One row per key of schema.<table>; raises ValueError for a key with no doc line."""
    rows = []
    for name, key in getattr(schema, table).items():
        if not (key.doc or "").strip():
            raise ValueError(f"core/schema.py {table}[{name!r}] has no doc line: the reference needs one")
        limits = getattr(key.check, "expected", "") if key.check else ""
        rows.append({"name": name, "path": f"{TABLES[table]}.{name}".lstrip("."), "doc": key.doc,
                     "type": type_name(key.type), "default": default_text(key), "limits": limits,
                     "required": bool(key.required),
                     "applies": "on reload (SIGHUP)" if key.reload == schema.RELOAD
                     else "on restart only (a reload refuses the change)"})
    return rows


def metric_rows() -> list[dict]:
    """Every family the endpoint renders, from a snapshot with one of everything."""
    from prometheus_client.parser import text_string_to_metric_families
    from mpqueue.supervisor import metrics, procstats

    snap = metrics.Snapshot(queues=("q",), tasks={"t": "q"}, workers={("q", "busy"): 0},
                            slots={("q", "busy"): 0}, ticks={("s", "fired"): 0}, restarts={},
                            processes=(procstats.Process("supervisor", "", "", os.getpid()),))
    counts = {"q": {"ready": 0, "oldest_age": 0.0, "paused": False, "served": True}}
    text = metrics.render(snap, counts).decode()
    rows = []
    for fam in text_string_to_metric_families(text):
        labels = sorted({k for s in fam.samples for k in s.labels} - {"le"})
        shown = {"counter": f"{fam.name}_total", "histogram": f"{fam.name}_bucket, _sum, _count"}.get(
            fam.type, fam.name)
        rows.append({"name": fam.name, "shown": shown, "type": fam.type, "labels": labels,
                     "doc": fam.documentation})
    return rows


def failure_kinds() -> tuple[str, ...]:
    return tally.KINDS


def exit_codes() -> dict[int, tuple[str, str]]:
    """status -> (constant name, its comment in ipc.py); aliases (X = Y) left out."""
    out = {}
    for name, value, comment in EXIT_NAME.findall(Path(ipc.__file__).read_text()):
        if value.isdigit():
            out[int(value)] = (name, (comment or "").strip())
    return out


def lua_key_layout() -> str:
    """The comment block heading _keys.lua, without the comment marks."""
    lines = []
    for line in (ROOT / "mpqueue" / "brokers" / "lua" / "_keys.lua").read_text().splitlines():
        if not line.startswith("--"):
            break
        lines.append(line[3:] if line.startswith("-- ") else line[2:])
    return "\n".join(lines)
