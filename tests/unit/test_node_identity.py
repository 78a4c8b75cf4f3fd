"""How a reader tells whether a heartbeat's supervisor still runs (proc.record_running):
on the supervisor's own host by its pid and start time, elsewhere not at all."""
import json
import os
import socket
import subprocess
import sys

from mpqueue import proc


def record(**kw) -> dict:
    """A heartbeat record of this test process, as its supervisor would write it."""
    return {"host": socket.gethostname(), "pid": os.getpid(), **proc.identity(), **kw}


def test_a_running_process_on_this_host_is_alive():
    assert proc.record_running(record()) is True


def test_an_exited_process_on_this_host_is_gone():
    # Given a process that ran, wrote its identity and was reaped
    child = subprocess.run([sys.executable, "-c", "import json, os\nfrom mpqueue import proc\n"
                            "print(json.dumps({'pid': os.getpid(), **proc.identity()}))"],
                           capture_output=True, text=True, check=True)
    rec = record(**json.loads(child.stdout))
    # Then its record reads as gone
    assert proc.record_running(rec) is False


def test_a_pid_reused_by_another_process_is_gone():
    # Given a record whose pid runs now, but started at another time (a reused pid)
    rec = record()
    rec["pid_start"] += 1
    assert proc.record_running(rec) is False


def test_another_host_or_boot_or_a_record_without_identity_cannot_tell():
    assert proc.record_running(record(host="elsewhere.example")) is None
    assert proc.record_running(record(boot_id="00000000-0000-0000-0000-000000000000")) is None
    assert proc.record_running({"host": socket.gethostname(), "pid": os.getpid()}) is None
    assert proc.record_running(record(pid="42")) is None
