"""Logging: JSON lines (python-json-logger) or text, to stderr and optionally a
size-rotated file. Under journald (JOURNAL_STREAM set) each stderr line carries
its syslog priority prefix (`<3>`), so `journalctl -p err` filters by level."""
from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from datetime import datetime, timezone

try:                                   # python-json-logger >= 3
    from pythonjsonlogger.json import JsonFormatter
except ImportError:                    # 2.0.x, as in Debian 12
    from pythonjsonlogger.jsonlogger import JsonFormatter

EXTRA_FIELDS = ("queue", "job_id", "task", "attempt", "duration_ms", "outcome", "worker", "pid")
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
_MARK = "_mpqueue_handler"


class _ServiceFilter(logging.Filter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def filter(self, record):
        record.service = self.service
        return True


class _Json(JsonFormatter):
    def add_fields(self, log_record, record, message_dict):
        super().add_fields(log_record, record, message_dict)
        log_record["time"] = datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
        log_record["level"] = record.levelname.lower()
        log_record["logger"] = record.name


class _Text(logging.Formatter):
    def format(self, record):
        line = super().format(record)
        extras = " ".join(f"{k}={getattr(record, k)}" for k in EXTRA_FIELDS if hasattr(record, k))
        return f"{line} {extras}" if extras else line


class _Journal(logging.Formatter):
    """Prefix every line of a record with its syslog priority for journald."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def format(self, record):
        prefix = f"<{_PRIORITY.get(record.levelno, 6)}>"
        return "\n".join(prefix + line for line in self.inner.format(record).splitlines())


def _formatter(fmt: str):
    if fmt == "json":
        return _Json("%(message)s %(service)s", timestamp=False, json_ensure_ascii=False) \
            if _accepts_ensure_ascii() else _Json("%(message)s %(service)s")
    return _Text("%(asctime)s %(levelname)s [%(service)s] %(message)s")


def _accepts_ensure_ascii() -> bool:
    import inspect
    try:
        return "json_ensure_ascii" in inspect.signature(JsonFormatter.__init__).parameters
    except (TypeError, ValueError):
        return False


def setup_logging(log, service: str, stream=None) -> None:
    """Configure the root logger; calling it again replaces its own handlers."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(h)
        if isinstance(h, logging.FileHandler):
            h.close()
    stream = stream or sys.stderr
    console = logging.StreamHandler(stream)
    fmt = _formatter(log.format)
    journald = bool(os.environ.get("JOURNAL_STREAM")) and stream is sys.stderr
    console.setFormatter(_Journal(fmt) if journald else fmt)
    handlers = [console]
    if log.file:
        rotating = logging.handlers.RotatingFileHandler(log.file, maxBytes=log.max_bytes, backupCount=log.backups)
        rotating.setFormatter(_formatter(log.format))
        handlers.append(rotating)
    for h in handlers:
        setattr(h, _MARK, True)
        h.addFilter(_ServiceFilter(service))
        root.addHandler(h)
    set_level(log.level)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())
