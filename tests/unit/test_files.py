"""Files a service creates or opens in shared places: modes that keep other
users out whatever the umask, and nothing planted (a link, a regular file)
ever followed, written or truncated. Real files in tmp_path; the only stand-in
is the effective uid, to exercise the non-root temp-directory rule as root."""
from __future__ import annotations

import os
import stat

import pytest

from mpqueue.brokers import PushItem, open_broker
from mpqueue.brokers.sqlite.wake import FifoWaiter, wake_fifos
from mpqueue.supervisor import lock, reload


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim"
    path.write_text("precious\n")
    return path


def test_wake_ups_never_follow_a_planted_link_or_write_a_planted_file(tmp_path, victim):
    wake = tmp_path / "wake"
    waiter = FifoWaiter(str(wake), (0o700, 0o600))
    (wake / "aaaa").symlink_to(victim)
    (wake / "bbbb").write_text("not a fifo\n")
    wake_fifos(str(wake))
    assert victim.read_text() == "precious\n" and (wake / "bbbb").read_text() == "not a fifo\n"
    assert os.read(waiter.fileno(), 16) == b"1"          # the real consumer was still woken
    waiter.close()


def test_a_new_sqlite_database_and_its_lock_are_private_under_any_umask(tmp_path):
    old = os.umask(0o022)
    try:
        broker = open_broker(f"sqlite://{tmp_path}/q.db")
        broker.push("default", [PushItem("j1 0 0 {}", 0, 0)])
    finally:
        os.umask(old)
    for name in ("q.db", "q.db-lock", "q.db-wal"):
        mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
        assert mode & 0o007 == 0, f"{name} is {mode:04o}"
    broker.close()


def test_the_lock_refuses_a_planted_link(tmp_path, monkeypatch, victim):
    monkeypatch.setenv("MPQUEUE_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "orders.lock").symlink_to(victim)
    with pytest.raises(lock.UnsafeRuntimeDir, match="cannot open the lock"):
        lock.acquire("orders")
    assert victim.read_text() == "precious\n"
    assert lock.read_pid("orders") is None


def test_the_reload_status_replaces_a_planted_link_without_following_it(tmp_path, monkeypatch, victim):
    monkeypatch.setenv("MPQUEUE_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "orders.reload").symlink_to(victim)
    assert reload.ReloadStatus.read("orders")["state"] == "none"
    reload.ReloadStatus("orders").write("done")
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "orders.reload").is_symlink() and reload.ReloadStatus.read("orders")["state"] == "done"


def test_a_runtime_directory_others_can_write_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    monkeypatch.setenv("MPQUEUE_RUNTIME_DIR", str(shared))
    with pytest.raises(lock.UnsafeRuntimeDir, match="writable by other users"):
        lock.acquire("orders")


@pytest.fixture
def as_user_1000(tmp_path, monkeypatch):
    for var in ("MPQUEUE_RUNTIME_DIR", "RUNTIME_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(lock.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(lock.tempfile, "gettempdir", lambda: str(tmp_path))
    return tmp_path / "mpqueue-1000"


def test_in_a_shared_temp_directory_a_runtime_directory_someone_else_made_is_refused(as_user_1000):
    as_user_1000.mkdir(mode=0o700)                       # made first by another user (root, here)
    with pytest.raises(lock.UnsafeRuntimeDir, match="belongs to uid 0, not to us"):
        lock.ensure_runtime_dir("orders")


def test_in_a_shared_temp_directory_our_own_private_directory_is_used(as_user_1000):
    (as_user_1000 / "orders").mkdir(parents=True, mode=0o700)
    for d in (as_user_1000, as_user_1000 / "orders"):
        os.chown(d, 1000, 1000)
    assert lock.ensure_runtime_dir("orders") == as_user_1000 / "orders"


def test_one_service_has_one_lock_path_from_a_shell_and_under_systemd(monkeypatch):
    monkeypatch.delenv("MPQUEUE_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(lock.os, "geteuid", lambda: 0)
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    from_shell = lock.lock_path("orders")
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/mpqueue/orders")      # RuntimeDirectory=mpqueue/%i
    assert lock.lock_path("orders") == from_shell == lock.Path("/run/mpqueue/orders/orders.lock")
