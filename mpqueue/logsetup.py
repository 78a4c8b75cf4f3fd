"""Logging for the supervisor and its workers: JSON lines or text, to stderr and
optionally a size-rotated file.

Under systemd (JOURNAL_STREAM set) every stderr line starts with its syslog
priority, `<3>` for an error, so `journalctl -p err` filters by level. Calling
setup_logging again (a reload, a forked worker) replaces the handlers it added
and leaves anyone else's alone.
"""
from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
from datetime import datetime, timezone

from mpqueue.core.names import redact_text  # absolute: tests load this file on its own

try:  # python-json-logger >= 3; importing the old name there warns
    from pythonjsonlogger.json import JsonFormatter
except ImportError:  # 2.0.x, as Debian 12 ships it
    from pythonjsonlogger.jsonlogger import JsonFormatter

# Fields code passes with `extra=`; text lines append them as key=value.
EXTRA_FIELDS = ("queue", "job_id", "task", "attempt", "duration_ms", "outcome", "worker", "pid")
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(service)s] %(message)s"
_OURS = "_mpqueue_handler"  # marks handlers this module added


class _ServiceFilter(logging.Filter):
    """Stamps the service name on every record and hides any URL password in its
    message; on the handlers, so records from any logger (libraries included)
    get both."""

    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        message = record.getMessage()
        if "://" in message:
            record.msg, record.args = redact_text(message), ()
        return True


# Line breaks json.dumps leaves raw with ensure_ascii=False; journald and
# readers that split on str.splitlines() would cut a record there.
_JSON_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


class _JsonLines(JsonFormatter):
    """One JSON object per line: time, level, logger, message, service, then extras."""

    def format(self, record: logging.LogRecord) -> str:
        # These characters only occur inside JSON strings, where the escape is valid.
        return super().format(record).translate(_JSON_BREAKS)

    def __init__(self):
        # Fields named in the format are always present; other `extra=` values
        # are added by the library. Non-ASCII text stays readable.
        super().__init__("%(message)s %(service)s", json_ensure_ascii=False)

    def add_fields(self, log_record, record, message_dict):  # positional: the name changed in 4.0
        super().add_fields(log_record, record, message_dict)
        rest = {k: v for k, v in log_record.items() if k != "taskName"}  # 3.12+, noise under 2.0.x
        log_record.clear()
        log_record.update(time=datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                          level=record.levelname.lower(), logger=record.name)
        log_record.update(rest)


class _Text(logging.Formatter):
    """`2026-11-24 12:00:00,123 INFO [orders] message key=value ...`"""

    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        # formatMessage, not format: the extras belong on the message line,
        # before any traceback.
        line = super().formatMessage(record)
        extras = " ".join(f"{k}={_text_value(getattr(record, k))}" for k in EXTRA_FIELDS if hasattr(record, k))
        return f"{line} {extras}" if extras else line


def _text_value(value) -> str:
    """Quote a value only when needed to keep `key=value` pairs splittable."""
    text = str(value)
    if text and not any(c.isspace() or c in '"=' for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)


class _JournalPrefix(logging.Formatter):
    """Prefixes each line with `<N>`, the syslog priority journald reads; a
    traceback's lines get it too, or journald would file them as info."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in self.inner.format(record).splitlines())


def syslog_priority(levelno: int) -> int:
    for threshold, priority in ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6)):
        if levelno >= threshold:
            return priority
    return 7


def _formatter(fmt: str) -> logging.Formatter:
    return _JsonLines() if fmt == "json" else _Text()


def _to_journal(stream) -> bool:
    """True when `stream` is our stderr and stderr is connected to journald.

    systemd sets JOURNAL_STREAM to the device:inode of the stderr it gave us; if
    stderr has since been redirected (a wrapper script, `2>file`), the numbers no
    longer match and the prefixes would only be noise.
    """
    journal = os.environ.get("JOURNAL_STREAM")
    if not journal or stream is not sys.stderr:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return True  # no descriptor to compare (a test double): trust the variable
    return journal == f"{st.st_dev}:{st.st_ino}"


def _remove_ours(root: logging.Logger) -> None:
    for handler in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(handler)
        handler.close()  # closes the file; a StreamHandler leaves its stream open


def setup_logging(log, service: str, stream=None) -> None:
    """Configure the root logger from a LogConfig; idempotent."""
    root = logging.getLogger()
    _remove_ours(root)
    stream = stream if stream is not None else sys.stderr
    console = logging.StreamHandler(stream)
    console.setFormatter(_JournalPrefix(_formatter(log.format)) if _to_journal(stream) else _formatter(log.format))
    handlers = [console]
    if log.file:
        rotating = logging.handlers.RotatingFileHandler(log.file, maxBytes=log.max_bytes,
                                                        backupCount=log.backups, encoding="utf-8")
        rotating.setFormatter(_formatter(log.format))
        handlers.append(rotating)
    for handler in handlers:
        setattr(handler, _OURS, True)
        handler.addFilter(_ServiceFilter(service))
        root.addHandler(handler)
    set_level(log.level)


def set_level(level: str) -> None:
    """Change the root level in place, e.g. after a reload."""
    logging.getLogger().setLevel(level.upper())
