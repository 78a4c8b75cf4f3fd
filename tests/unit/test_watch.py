"""What --reload-on-change watches (mpqueue/ops/watch.py), found without importing."""
import sys
from types import SimpleNamespace

from mpqueue.ops import watch


def test_it_watches_the_imported_packages_and_modules_and_the_yaml(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    for f in ("pkg/__init__.py", "pkg/sub/jobs.py", "single.py"):
        (tmp_path / f).write_text("raise SystemExit('imported!')\n")      # looking must not import
    cfg = SimpleNamespace(path=(str(tmp_path),), imports=("pkg.sub.jobs", "single", "nosuchmodule"),
                          source=str(tmp_path / "svc.yaml"))
    files = {str(f.relative_to(tmp_path)) for f in watch.watched_files(cfg)}
    assert files == {"pkg/__init__.py", "pkg/sub/jobs.py", "single.py", "svc.yaml"}
    assert str(tmp_path) not in sys.path and "pkg" not in sys.modules


def test_systemd_is_told_by_its_environment():
    assert watch.under_systemd({"INVOCATION_ID": "x"}) and watch.under_systemd({"NOTIFY_SOCKET": "/run/x"})
    assert not watch.under_systemd({})
