"""A graceful stop is graceful in every phase: also while the service is still
starting (one queue's workers already running jobs, another's still booting)."""
import signal

import pytest

from mpqueue import Client
from tests.support import TASKS, wait_for

SLOW_BOOT = TASKS + '''
def slow_start(ctx):
    """A start hook that takes its time: the service stays not-ready meanwhile."""
    r().rpush("test:slow_booting", os.getpid())
    time.sleep(60)  # ok: a slow on_worker_start, ended by the stop
'''


@pytest.mark.parametrize("mode", ["grab", "dispatch"])
def test_a_stop_during_start_up_lets_running_jobs_finish_and_exits_cleanly(service, redis_url, rdb, mode):
    # Given a service whose "default" worker runs a job while queue "slow" is still booting
    client = Client(redis_url)
    client.push("default", "testtasks:sleep_record", args=["running", 1.5])
    svc = service({"queues": {"default": {"workers": 1, "mode": mode},
                              "slow": {"workers": 1, "on_worker_start": "testtasks:slow_start"}}},
                  tasks=SLOW_BOOT).start(wait_ready=False)
    wait_for(lambda: rdb.llen("test:starts") == 1 and rdb.llen("test:slow_booting") == 1, 20,
             what="a job running while the other queue boots")
    assert not any("READY=1" in m for m in svc.read_messages())
    # When it is told to stop (systemctl stop, the end of TimeoutStartSec)
    svc.signal(signal.SIGTERM)
    # Then the running job finishes and is acked, nothing is left held or failed, and the exit is clean
    assert svc.proc.wait(20) == 0, svc.log()
    assert rdb.lrange("test:runs", 0, -1) == ["running"]
    counts = client.broker.counts("default")
    assert counts["running"] == 0 and counts["ready"] == 0 and counts["failed"] == 0, counts
    assert "Traceback" not in svc.log()
