"""Dramatiq under benchmark, run from its own virtualenv (bench/.venv-peers):
`--processes 2 --threads 1`, the same private Redis, completion recorded the same way."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import kill_group, wait_until

HERE = Path(__file__).resolve().parent
PEERS = HERE / ".venv-peers"
REQUIREMENTS = HERE / "requirements-peers.txt"

ACTORS = '''
import os, sys, time
import dramatiq, redis
from dramatiq.brokers.redis import RedisBroker

dramatiq.set_broker(RedisBroker(url=os.environ["BENCH_BROKER"]))
_results = redis.Redis.from_url(os.environ["BENCH_RESULTS"])


@dramatiq.actor(queue_name="bench", max_retries=0)
def noop(*args):
    _results.incr("done")


if __name__ == "__main__":
    n = int(sys.argv[1])
    for _ in range(n):
        noop.send()
'''


def ensure_venv() -> Path:
    """Create bench/.venv-peers with the pinned peers once; reuse it after."""
    stamp = PEERS / "requirements.stamp"
    wanted = REQUIREMENTS.read_text()
    if stamp.exists() and stamp.read_text() == wanted:
        return PEERS / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
    subprocess.run([str(PEERS / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "-r",
                    str(REQUIREMENTS)], check=True)
    stamp.write_text(wanted)
    return PEERS / "bin" / "python"


class Dramatiq:
    name = label = "dramatiq"

    def __init__(self, redis):
        self.python = ensure_venv()
        self.redis = redis
        self.dir = Path(tempfile.mkdtemp(prefix="dramatiq-bench-"))
        (self.dir / "benchactors.py").write_text(ACTORS)
        self.env = dict(os.environ, BENCH_BROKER=redis.url, BENCH_RESULTS=redis.results_url,
                        PYTHONPATH=str(self.dir))
        out = subprocess.run([str(self.python), "-c", "import dramatiq; print(dramatiq.__version__)"],
                             capture_output=True, text=True, env=self.env, check=True)
        self.version = out.stdout.strip()
        self.proc = None

    def push_bulk(self, n: int) -> None:
        subprocess.run([str(self.python), str(self.dir / "benchactors.py"), str(n)], env=self.env, check=True)

    def start_workers(self) -> None:
        dramatiq = self.python.parent / "dramatiq"
        self.proc = subprocess.Popen([str(dramatiq), "benchactors", "--processes", "2", "--threads", "1"],
                                     env=self.env, cwd=self.dir, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=open(self.dir / "log", "ab"))

    def stop_workers(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
            self.proc = None

    def wait_done(self, n: int, timeout: float) -> None:
        wait_until(lambda: int(self.redis.results.get("done") or 0) >= n, timeout, "dramatiq drain")
        time.sleep(0)
