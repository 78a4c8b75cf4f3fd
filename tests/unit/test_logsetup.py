"""mpqueue.logsetup: JSON or text lines, journald priorities, idempotent setup."""
import importlib.util
import io
import json
import logging
import logging.handlers
import os
import re
import sys
import types
import warnings
from datetime import datetime

import pytest

from mpqueue import logsetup
from mpqueue.core.config import LogConfig

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\w+) \[(\S+)\] (.*)$")


@pytest.fixture(autouse=True)
def clean_root(monkeypatch):
    """Leave the root logger (pytest's own handlers included) as we found it."""
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def ours():
    return [h for h in logging.getLogger().handlers if getattr(h, logsetup._OURS, False)]


def setup(stream=None, **log):
    stream = io.StringIO() if stream is None else stream
    logsetup.setup_logging(LogConfig(**log), "orders", stream=stream)
    return stream


def lines(stream) -> list[str]:
    return stream.getvalue().splitlines()


# -- JSON ------------------------------------------------------------------------

def test_json_lines_carry_time_level_logger_message_service_and_extras():
    out = setup()
    logging.getLogger("mpqueue.worker").info("job %s done", "j1", extra={
        "queue": "emails", "job_id": "j1", "task": "app:send", "attempt": 2,
        "duration_ms": 12.5, "outcome": "ok", "worker": 3, "pid": 4242})
    (line,) = lines(out)
    record = json.loads(line)
    assert list(record)[:5] == ["time", "level", "logger", "message", "service"]
    assert (record["level"], record["logger"], record["message"], record["service"]) == \
        ("info", "mpqueue.worker", "job j1 done", "orders")
    assert datetime.fromisoformat(record["time"]).tzinfo is not None
    assert {k: record[k] for k in logsetup.EXTRA_FIELDS} == {
        "queue": "emails", "job_id": "j1", "task": "app:send", "attempt": 2,
        "duration_ms": 12.5, "outcome": "ok", "worker": 3, "pid": 4242}


def test_a_multi_line_message_with_a_traceback_stays_one_json_line():
    out = setup()
    try:
        raise ValueError("bad\nworse")
    except ValueError:
        logging.getLogger("x").exception("first\nsecond")
    (line,) = lines(out)
    record = json.loads(line)
    assert record["message"] == "first\nsecond" and "ValueError: bad" in record["exc_info"]


def test_json_keeps_non_ascii_text_readable():
    out = setup()
    logging.getLogger("x").warning("café")
    assert "café" in out.getvalue()


NEW_PJL = importlib.util.find_spec("pythonjsonlogger.json") is not None


@pytest.mark.skipif(not NEW_PJL, reason="python-json-logger 2.0.x installed")
def test_the_new_python_json_logger_module_is_imported_without_warnings():
    # Given python-json-logger >= 3 installed, when logsetup is imported afresh
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh = _fresh_logsetup()
    # Then it uses pythonjsonlogger.json, not the deprecated jsonlogger
    assert fresh.JsonFormatter.__module__ == "pythonjsonlogger.json"


def test_python_json_logger_2_is_used_when_the_new_module_is_missing(monkeypatch):
    # Given only the 2.0.x layout (no pythonjsonlogger.json)
    old = types.ModuleType("pythonjsonlogger.jsonlogger")
    old.JsonFormatter = logsetup.JsonFormatter
    monkeypatch.setitem(sys.modules, "pythonjsonlogger.json", None)
    monkeypatch.setitem(sys.modules, "pythonjsonlogger.jsonlogger", old)
    # When logsetup is imported, then it falls back to jsonlogger.JsonFormatter
    assert _fresh_logsetup().JsonFormatter is old.JsonFormatter


def _fresh_logsetup():
    spec = importlib.util.spec_from_file_location("logsetup_fresh", logsetup.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- text ------------------------------------------------------------------------

def test_text_lines_read_time_level_service_message_then_extras():
    out = setup(format="text")
    logging.getLogger("x").info("job done", extra={"queue": "emails", "job_id": "j1", "attempt": 2})
    (line,) = lines(out)
    assert TEXT_LINE.match(line).groups() == ("INFO", "orders", "job done queue=emails job_id=j1 attempt=2")


def test_text_extras_are_quoted_only_when_they_contain_spaces():
    out = setup(format="text")
    logging.getLogger("x").error("failed", extra={"outcome": "error: two words", "task": "a:b"})
    assert lines(out)[0].endswith('failed task=a:b outcome="error: two words"')


def test_text_extras_come_before_the_traceback():
    out = setup(format="text")
    try:
        raise KeyError("k")
    except KeyError:
        logging.getLogger("x").exception("crashed", extra={"job_id": "j9"})
    first, *rest = lines(out)
    assert first.endswith("crashed job_id=j9") and rest[0].startswith("Traceback")


# -- journald --------------------------------------------------------------------

def test_under_journald_each_stderr_line_starts_with_its_syslog_priority(monkeypatch):
    # Given stderr is the journal
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    logsetup.setup_logging(LogConfig(format="text", level="debug"), "orders")
    # When records of each level are logged, a traceback included
    log = logging.getLogger("x")
    log.debug("d")
    log.info("i")
    log.warning("w")
    try:
        raise RuntimeError("r")
    except RuntimeError:
        log.exception("e")
    log.critical("c")
    # Then every line, the traceback's too, carries <N>
    got = lines(sys.stderr)
    assert [line[:3] for line in got[:3]] == ["<7>", "<6>", "<4>"]
    assert got[3].startswith("<3>") and got[4] == "<3>Traceback (most recent call last):"
    assert all(line.startswith("<3>") for line in got[3:-1]) and got[-1].startswith("<2>")


def test_without_journal_stream_there_is_no_priority_prefix(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    logsetup.setup_logging(LogConfig(), "orders")
    logging.getLogger("x").warning("w")
    assert sys.stderr.getvalue().startswith("{")


def test_a_stream_other_than_stderr_gets_no_priority_prefix(monkeypatch):
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    out = setup()
    logging.getLogger("x").warning("w")
    assert out.getvalue().startswith("{")


@pytest.mark.parametrize("same_file", [True, False])
def test_stderr_gets_the_prefix_only_if_it_is_still_the_journal_stream(monkeypatch, tmp_path, same_file):
    # Given systemd's JOURNAL_STREAM, and a stderr that is (or is no longer) that stream
    journal, other = tmp_path / "journal", tmp_path / "redirected"
    journal.touch()
    other.touch()
    st = os.stat(journal)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    with open(journal if same_file else other, "w") as stderr:
        monkeypatch.setattr(sys, "stderr", stderr)
        logsetup.setup_logging(LogConfig(), "orders")
        logging.getLogger("x").warning("w")
        stderr.flush()
    written = (journal if same_file else other).read_text()
    assert written.startswith("<4>{") == same_file


@pytest.mark.parametrize("level, priority", [
    (logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4), (logging.ERROR, 3), (logging.CRITICAL, 2),
    (25, 6), (5, 7), (60, 2)])
def test_levels_map_to_syslog_priorities(level, priority):
    assert logsetup.syslog_priority(level) == priority


# -- handlers, file and level ----------------------------------------------------

def test_calling_setup_again_replaces_its_handlers_and_keeps_others():
    # Given a handler someone else added
    foreign = logging.NullHandler()
    logging.getLogger().addHandler(foreign)
    # When setup runs twice (a reload, a forked worker)
    setup()
    out = setup()
    logging.getLogger("x").warning("once")
    # Then there is one handler of ours, the foreign one stays, and a record is written once
    assert len(ours()) == 1 and foreign in logging.getLogger().handlers
    assert len(lines(out)) == 1


def test_a_log_file_is_size_rotated_and_never_gets_the_journal_prefix(monkeypatch, tmp_path):
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    path = tmp_path / "svc.log"
    logsetup.setup_logging(LogConfig(file=str(path), max_bytes=4096, backups=2), "orders")
    (rotating,) = [h for h in ours() if isinstance(h, logsetup.SharedRotatingFile)]
    assert (rotating.max_bytes, rotating.backups) == (4096, 2)
    logging.getLogger("x").warning("to both")
    assert json.loads(path.read_text())["message"] == "to both"
    assert sys.stderr.getvalue().startswith("<4>{")


def test_setting_up_again_closes_the_previous_log_file(tmp_path):
    setup(file=str(tmp_path / "a.log"))
    (first,) = [h for h in ours() if isinstance(h, logsetup.SharedRotatingFile)]
    setup(file=str(tmp_path / "b.log"))
    assert first.fd == first.lock_fd == -1 and first not in logging.getLogger().handlers


def test_records_from_any_logger_carry_the_service_name():
    out = setup(format="text")
    logging.getLogger("some.library").warning("hi")
    assert "[orders] hi" in out.getvalue()


def test_the_configured_level_filters_records_and_set_level_changes_it():
    out = setup(level="warning")
    logging.getLogger("x").info("hidden")
    logsetup.set_level("debug")
    logging.getLogger("x").debug("shown")
    assert [json.loads(line)["message"] for line in lines(out)] == ["shown"]
    assert logging.getLogger().level == logging.DEBUG


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_password_in_a_logged_url_never_reaches_the_log(fmt):
    out = setup(format=fmt)
    logging.getLogger("redis").error("cannot reach %s", "redis://:hunter2@db:6379/0 (or unix:///s?password=pw2)")
    (line,) = lines(out)
    assert "hunter2" not in line and "pw2" not in line and "redis://:***@db:6379/0" in line


def test_unicode_line_breaks_stay_inside_one_json_line():
    out = setup()
    logging.getLogger("x").info("a\u2028b\u2029c\x85d")
    (line,) = out.getvalue().splitlines()
    assert json.loads(line)["message"] == "a\u2028b\u2029c\x85d"


WRITER = """
import logging, sys
from mpqueue import logsetup
from mpqueue.core.config import LogConfig
logsetup.setup_logging(LogConfig(file=sys.argv[1], max_bytes=int(sys.argv[2]), backups=5, format="text"), "svc",
                       stream=open("/dev/null", "w"))
for i in range(int(sys.argv[3])):
    logging.getLogger("w").warning("writer=%s seq=%d %s", sys.argv[4], i, "x" * 60)
"""


def test_rotation_by_many_processes_keeps_the_whole_promised_history(tmp_path):
    # Given 12 processes writing one log file with 5 backups of 8 KiB, 4x more than it keeps
    import subprocess
    path, max_bytes, per_writer = tmp_path / "svc.log", 8192, 200
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(max_bytes), str(per_writer), str(w)])
               for w in range(12)]
    assert all(p.wait(60) == 0 for p in writers)
    files = [path] + [tmp_path / f"svc.log.{i}" for i in range(1, 6)]
    assert all(f.exists() for f in files) and not (tmp_path / "svc.log.6").exists()
    kept = {}
    for f in files:
        data = f.read_text()
        assert len(data.encode()) <= max_bytes
        for line in data.splitlines():
            m = re.search(r"writer=(\d+) seq=(\d+) x{60}$", line)
            assert m, line                                   # whole lines only, never two interleaved
            kept.setdefault(int(m.group(1)), []).append(int(m.group(2)))
    # Then the backups hold what was promised (every file but the newest nearly full)...
    sizes = [f.stat().st_size for f in files[1:]]
    assert min(sizes) > max_bytes - 200, sizes
    # ...and what was kept is the newest history of every writer, without holes
    for w, seqs in kept.items():
        assert sorted(seqs) == list(range(per_writer - len(seqs), per_writer)), w
    for f in files:
        assert f.stat().st_mode & 0o077 == f.stat().st_mode & 0o040    # 0640 at most: no one else writes it


# -- `mpqueue check` on log.file before the service's first start
def log_problem(tmp_path, file):
    """log_file_problem with tmp_path/log standing for /var/log (where LogsDirectory= lives)."""
    return logsetup.log_file_problem(LogConfig(file=str(file)), "orders", logs_root=str(tmp_path / "log"))


def test_a_log_directory_systemd_will_make_at_start_is_no_problem_before_it(tmp_path):
    # Given /var/log, but not yet /var/log/mpqueue/orders (LogsDirectory=mpqueue/orders makes it at start)
    (tmp_path / "log").mkdir()
    assert log_problem(tmp_path, tmp_path / "log/mpqueue/orders/orders.log") is None
    (tmp_path / "log/mpqueue").mkdir()
    assert log_problem(tmp_path, tmp_path / "log/mpqueue/orders/orders.log") is None


def test_a_file_or_a_link_where_the_log_directory_should_be_made_is_refused(tmp_path):
    (tmp_path / "log").mkdir()
    (tmp_path / "log/mpqueue").write_text("")
    problem = log_problem(tmp_path, tmp_path / "log/mpqueue/orders/orders.log")
    assert problem == (f"log.file: {tmp_path}/log/mpqueue/orders/orders.log: {tmp_path}/log/mpqueue is not a "
                       "directory, so no log directory can be made there")
    (tmp_path / "log/mpqueue").unlink()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "log/mpqueue")
    problem = log_problem(tmp_path, tmp_path / "log/mpqueue/orders/orders.log")
    assert problem.endswith(f"{tmp_path}/log/mpqueue is a symbolic link; name the directory itself")


def test_a_missing_log_directory_outside_the_logs_root_is_still_refused(tmp_path):
    # Nothing makes it: `mpqueue run` would fail to open the file
    (tmp_path / "log").mkdir()
    for file in (tmp_path / "srv/orders.log", tmp_path / "log/../srv/orders.log"):
        problem = log_problem(tmp_path, file)
        assert problem.startswith(f"log.file: {os.path.abspath(file)}: the directory") and "does not exist" in problem
        assert "LogsDirectory=mpqueue/orders" in problem


def test_a_link_as_the_log_file_is_refused_once_the_directory_exists(tmp_path):
    (tmp_path / "log/mpqueue/orders").mkdir(parents=True)
    os.symlink(tmp_path / "target", tmp_path / "log/mpqueue/orders/orders.log")
    assert "is a symbolic link" in log_problem(tmp_path, tmp_path / "log/mpqueue/orders/orders.log")
