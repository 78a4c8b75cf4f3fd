"""The shipped units (mpqueue@.service, mpqueue-web@.service) as systemd's own tools judge them: `systemd-analyze
verify` has nothing to say about it, and `systemd-analyze security` rates its
exposure 2.0 or better. No running systemd needed, nor root."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import require_sphinx, sphinx

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "packaging/systemd"
# (template, how many commands of it run /usr/bin/mpqueue)
UNITS = [("mpqueue@.service", 2), ("mpqueue-web@.service", 1)]
pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze not installed (it comes with the systemd package)")


@pytest.fixture(scope="module")
def man_pages(tmp_path_factory) -> Path:
    """The man pages the .deb installs, built as its rules build them (sphinx -b man
    from docs/), in a MANPATH of their own."""
    require_sphinx(" (the man pages are built from docs/)")
    out = tmp_path_factory.mktemp("man")
    done = sphinx("man", REPO / "docs", out / "built")
    assert done.returncode == 0, done.stdout + done.stderr
    (out / "man1").mkdir()
    shutil.copy(out / "built/mpqueue.1", out / "man1")
    return out


def analyze(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "--no-pager", *args], capture_output=True, text=True,
                          encoding="utf-8", errors="replace", timeout=120,
                          env={**os.environ, "SYSTEMD_COLORS": "0", **(env or {})})


@pytest.mark.parametrize("template, commands", UNITS)
def test_verify_has_nothing_to_say_about_the_unit(tmp_path, man_pages, template, commands):
    # verify checks that ExecStart='s and ExecReload='s programs exist: the unit runs
    # /usr/bin/mpqueue, which the .deb installs; here it runs the code under test, as in harness-driven tests.
    units = tmp_path / "units"
    units.mkdir()
    unit = (SHIPPED / template).read_text()
    assert unit.count("/usr/bin/mpqueue ") == commands
    (units / template).write_text(unit.replace("/usr/bin/mpqueue", f"{sys.executable} -m mpqueue.ops.cli"))
    instance = template.replace("@", "@example")
    shutil.copy(SHIPPED / "mpqueue.target", units)
    # Documentation=man:mpqueue(1): verify asks `man` for it; give it the page the .deb installs.
    man = "--man=yes" if shutil.which("man") else "--man=no"
    # FILE:NAME loads the template file as that instance; --recursive-errors=no: the machine's
    # own units (network-online.target, multi-user.target) are not ours to judge.
    result = analyze("verify", man, "--recursive-errors=no", f"{units}/{template}:{instance}",
                     str(units / "mpqueue.target"), env={"MANPATH": str(man_pages)})
    output = result.stdout + result.stderr
    about_ours = [line for line in output.splitlines() if "mpqueue" in line]
    assert result.returncode == 0 and not about_ours, output


@pytest.mark.parametrize("template, commands", UNITS)
def test_security_exposure_is_at_most_2(tmp_path, template, commands):
    # The unit exactly as shipped, installed in a file system root of its own.
    system = tmp_path / "root/etc/systemd/system"
    system.mkdir(parents=True)
    for name in (template, "mpqueue.target"):
        shutil.copy(SHIPPED / name, system)
    instance = template.replace("@", "@example")
    result = analyze("security", "--offline=true", f"--root={tmp_path / 'root'}", instance)
    line = next((line for line in result.stdout.splitlines() if "Overall exposure level" in line), None)
    assert line is not None, result.stdout + result.stderr
    level = re.search(rf"Overall exposure level for {re.escape(instance)}: (\d+\.\d+) ", line)
    assert level is not None, line
    assert float(level.group(1)) <= 2.0, result.stdout
