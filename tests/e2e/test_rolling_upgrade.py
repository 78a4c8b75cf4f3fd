"""A rolling upgrade: a node of v0.1.0 (commit 70d000a, its code taken from this
repository's history) and a node of this tree, one service on one broker, with
producers of both releases (each release's mpqctl). Every job runs exactly
once, jobs pushed by either release run on the other, and the failed and
delayed jobs v0.1.0 wrote are read and run by this tree. On Redis and SQLite.

Without that commit (a shallow clone, a tarball) the test skips, saying why."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import mpqueue
from mpqueue.brokers import open_broker
from mpqueue.brokers.data_format import CURRENT
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]
OLD_COMMIT, OLD_VERSION = "70d000a", "0.1.0"
Q = "default"

TASKS = '''
import os
import mpqueue
import redis as _redis

_r = None
def r():
    global _r
    if _r is None:
        _r = _redis.Redis.from_url(os.environ["MPQ_TEST_REDIS"], decode_responses=True)
    return _r

def _ran(tag):
    j = mpqueue.current_job()
    r().rpush("test:runs", f"{tag} {j.id} {mpqueue.__version__}")

@mpqueue.task(queue="default")
def record(tag):
    _ran(tag)

@mpqueue.task(queue="default", retries=0)
def flaky(tag):
    if r().get("test:broken"):
        raise RuntimeError(f"broken on {mpqueue.__version__}")
    _ran(tag)
'''


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory) -> Path:
    """v0.1.0's mpqueue package, from git: no tag, no network."""
    if shutil.which("git") is None:
        pytest.skip("no git: the rolling upgrade test takes v0.1.0's code from the repository's history")
    found = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{OLD_COMMIT}^{{commit}}"],
                           capture_output=True)
    if found.returncode != 0:
        pytest.skip(f"commit {OLD_COMMIT} (v{OLD_VERSION}) is not in this clone (a shallow clone?): "
                    "the rolling upgrade test runs that release's code")
    tree = tmp_path_factory.mktemp(f"v{OLD_VERSION}")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", OLD_COMMIT, "mpqueue"], capture_output=True,
                             check=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


pytestmark = pytest.mark.each_broker


class Release:
    """One release's code: its mpqctl, and how its `mpqueue run` is started."""

    def __init__(self, tree: Path):
        self.tree = tree
        # `python -m` imports from its working directory first, PYTHONPATH next: both are the tree's.
        self.env = {k: v for k, v in os.environ.items() if k not in ("MPQUEUE_BROKER", "MPQUEUE_CONFIG")}
        self.env["PYTHONPATH"] = str(tree)

    def ctl(self, config: Path, *args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "mpqueue.ops.ctl", "--config", str(config), *args],
                                capture_output=True, text=True, cwd=self.tree, env=self.env, timeout=30)
        assert result.returncode == 0, (self.tree, args, result.stdout, result.stderr)
        return result.stdout.strip()

    def push(self, config: Path, task: str, tag: str, *options: str) -> str:
        return self.ctl(config, "push", Q, f"testtasks:{task}", "--args", json.dumps([tag]), *options)

    def start(self, node):
        node.start(cwd=self.tree, extra_env={"PYTHONPATH": str(self.tree)})


def runs(rdb) -> list[tuple[str, str, str]]:
    """(tag, job id, version of the node that ran it), in order."""
    return [tuple(line.split()) for line in rdb.lrange("test:runs", 0, -1)]


def test_old_and_new_nodes_and_producers_share_one_broker(service, broker_url, rdb, old_tree):
    old, new = Release(old_tree), Release(ROOT)
    assert old.ctl(Path("/dev/null"), "--version") == f"mpqctl, version {OLD_VERSION}" != mpqueue.__version__
    old_node = service(tasks=TASKS)
    new_node = service(tasks=TASKS)
    config = new_node.config_path        # the same service: the nodes' files differ only in their code dirs
    pushed = {}                          # job id -> (tag, release that pushed it)

    def push(release, task, tag, *options):
        job_id = release.push(config, task, tag, *options)
        pushed[job_id] = (tag, "old" if release is old else "new")
        return job_id

    def ran(*tags):
        return wait_for(lambda: {t for t, _, _ in runs(rdb)} >= set(tags), 20, 0.05, what=f"runs of {tags}")

    # Given a v0.1.0 node alone: it runs what the new mpqctl pushes, and fails a job into its failed store
    old.start(old_node)
    for n in range(3):
        push(new, "record", f"new-to-old-{n}")
    rdb.set("test:broken", "1")
    failed_id = push(old, "flaky", "failed-by-old")
    ran("new-to-old-0", "new-to-old-1", "new-to-old-2")
    broker = open_broker(broker_url)
    wait_for(lambda: broker.counts(Q)["failed"] == 1, 20, 0.05, what="the old node's failure")
    assert old_node.stop() == 0
    # and, with no node running, v0.1.0's mpqctl pushes jobs, one of them delayed
    for n in range(3):
        push(old, "record", f"old-to-new-{n}")
    delayed_id = push(old, "record", "delayed-by-old", "--delay", "1")
    assert broker.find(Q, delayed_id)["state"] == "scheduled"

    # When a node of this tree starts on that broker
    new.start(new_node)
    # Then it runs what v0.1.0 pushed, the delayed job when due...
    ran("old-to-new-0", "old-to-new-1", "old-to-new-2", "delayed-by-old")
    # ...and reads v0.1.0's failed job, which the new mpqctl retries and the new node runs
    [failure] = json.loads(new.ctl(config, "failed", Q, "--json"))
    assert failure["id"] == failed_id and failure["error"]["message"] == f"RuntimeError: broken on {OLD_VERSION}"
    rdb.delete("test:broken")
    new.ctl(config, "retry", Q, failed_id)
    ran("failed-by-old")

    # And with both nodes up, producers of both releases push side by side
    old.start(old_node)
    for n in range(4):
        push(old, "record", f"both-old-{n}")
        push(new, "record", f"both-new-{n}")
    ran(*(f"both-{who}-{n}" for who in ("old", "new") for n in range(4)))
    assert old_node.stop() == 0 and new_node.stop() == 0

    # Every job ran exactly once, and each ran where the phases sent it
    done = runs(rdb)
    assert Counter(job_id for _, job_id, _ in done) == Counter(pushed.keys()), done
    by_tag = {tag: version for tag, _, version in done}
    assert {by_tag[f"new-to-old-{n}"] for n in range(3)} == {OLD_VERSION}
    assert {by_tag[t] for t in ("old-to-new-0", "old-to-new-1", "old-to-new-2", "delayed-by-old",
                                "failed-by-old")} == {mpqueue.__version__}
    c = broker.counts(Q)
    assert (c["ready"], c["scheduled"], c["running"], c["failed"]) == (0, 0, 0, 0)
    # and the broker now says which format it holds (v0.1.0 wrote no record: format 1)
    assert broker.check_format() == CURRENT == 1
    broker.close()
