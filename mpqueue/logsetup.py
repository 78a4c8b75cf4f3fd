"""Logging for the supervisor and its workers: JSON lines or text, to stderr and
optionally a size-rotated file.

Under systemd (JOURNAL_STREAM set) every stderr line starts with its syslog
priority, `<3>` for an error, so `journalctl -p err` filters by level. Calling
setup_logging again (a reload, a forked worker) replaces the handlers it added
and leaves anyone else's alone.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import stat
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
LOGS_ROOT = "/var/log"      # where systemd makes a system unit's LogsDirectory=


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


class SharedRotatingFile(logging.Handler):
    """A size-rotated log file that every process of a service writes: the
    supervisor, each worker, the dashboard. Each record is written under an flock
    on `<file>.lock`, and only after checking that the file is still the one at
    the path (another process may have rotated it: then reopen) and that it has
    room (else rotate, once, with the lock held). So the history kept is
    max_bytes x backups whatever the number of writers; a RotatingFileHandler per
    process rotated the same file again and again and lost most of it.

    Files are created 0640 and never opened through a link."""

    def __init__(self, path: str, max_bytes: int, backups: int):
        super().__init__()
        self.path, self.max_bytes, self.backups = os.path.abspath(path), max_bytes, backups
        self.lock_fd = _open_private(self.path + ".lock", os.O_RDWR)
        self.fd = _open_private(self.path, os.O_WRONLY | os.O_APPEND)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
            try:
                self._reopen_if_moved()
                size = os.fstat(self.fd).st_size
                if self.max_bytes and self.backups and size and size + len(data) > self.max_bytes:
                    self._rotate()
                os.write(self.fd, data)
            finally:
                fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
        except Exception:
            self.handleError(record)

    def _reopen_if_moved(self) -> None:
        try:
            here = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            here = None
        mine = os.fstat(self.fd)
        if here is None or (here.st_dev, here.st_ino) != (mine.st_dev, mine.st_ino):
            self._reopen()

    def _rotate(self) -> None:
        for i in range(self.backups - 1, 0, -1):
            older = f"{self.path}.{i}"
            if os.path.lexists(older):
                os.replace(older, f"{self.path}.{i + 1}")
        os.replace(self.path, self.path + ".1")
        self._reopen()

    def _reopen(self) -> None:
        fd = _open_private(self.path, os.O_WRONLY | os.O_APPEND)
        os.close(self.fd)
        self.fd = fd

    def close(self) -> None:
        for fd in (self.fd, self.lock_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fd = self.lock_fd = -1
        super().close()


def _open_private(path: str, flags: int) -> int:
    fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", path)
    return fd


def log_file_problem(log, service: str, logs_root: str = LOGS_ROOT) -> str | None:
    """Why the service could not write its log.file, in one line, or None. For
    `mpqueue check`, which may run as another user than the service: it judges by
    access(2), which also sees a read-only mount (ProtectSystem=strict). A directory
    below `logs_root` that does not exist yet is no problem: systemd makes it at the
    service's start (LogsDirectory=), so `check` before the first start passes, unless
    what stands in its way can never be a directory (a file, a symbolic link)."""
    if not log.file:
        return None
    path = os.path.abspath(log.file)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        return _missing_dir_problem(path, directory, service, logs_root)
    for candidate in (path, path + ".lock"):
        if os.path.islink(candidate):
            return f"log.file: {candidate} is a symbolic link; name the file itself"
        if os.path.lexists(candidate) and not os.path.isfile(candidate):
            return f"log.file: {candidate} is not a regular file"
    if not os.access(directory, os.W_OK | os.X_OK) and _judged_by_us(directory):
        return f"log.file: {path}: the directory {directory} is not writable{_log_dir_hint(service)}"
    if os.path.exists(path) and not os.access(path, os.W_OK) and _judged_by_us(path):
        return f"log.file: {path} is not writable"
    return None


def _missing_dir_problem(path: str, directory: str, service: str, logs_root: str) -> str | None:
    """A log directory that is not there: None if systemd's LogsDirectory= can make
    it (below logs_root, every part that exists a real directory), else why not.
    `mpqueue run` judges it again at start: a unit without LogsDirectory= fails then."""
    root = os.path.abspath(logs_root)
    if os.path.commonpath([root, directory]) != root or directory == root:
        return f"log.file: {path}: the directory {directory} does not exist{_log_dir_hint(service)}"
    part = root
    for name in os.path.relpath(directory, root).split(os.sep):
        part = os.path.join(part, name)
        if os.path.islink(part):
            return f"log.file: {path}: {part} is a symbolic link; name the directory itself"
        if not os.path.lexists(part):
            return None
        if not os.path.isdir(part):
            return f"log.file: {path}: {part} is not a directory, so no log directory can be made there"
    return None


def _judged_by_us(path: str) -> bool:
    """Whether access(2) as the caller says anything about the service: an operator
    in the service's group runs `mpqueue check` on a log directory the service's
    user owns (LogsDirectory=) and may not write it; `mpqueue run` judges it then."""
    return os.geteuid() in (0, os.stat(path).st_uid)


def open_problem(exc: OSError, log, service: str) -> str:
    """One line for a log.file that failed to open at start-up."""
    return f"log.file: cannot open {os.path.abspath(log.file)}: {exc.strerror or exc}{_log_dir_hint(service)}"


def _log_dir_hint(service: str) -> str:
    return (f"; under systemd the unit may write only its own directories: give it one with a drop-in "
            f"saying LogsDirectory=mpqueue/{service}, and log.file: /var/log/mpqueue/{service}/{service}.log")


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
        rotating = SharedRotatingFile(log.file, log.max_bytes, log.backups)   # OSError: see open_problem
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
