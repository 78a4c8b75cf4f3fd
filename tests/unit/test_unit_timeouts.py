"""The shipped unit's timeouts against what `mpqueue reload` waits: systemd kills
ExecReload= after TimeoutStartSec, so the command's own wait must end first and
fail with its one line, not be killed mid-wait."""
import re
from pathlib import Path

from mpqueue.ops.cli import reload_cmd

UNIT = Path(__file__).resolve().parents[2] / "packaging/systemd/mpqueue@.service"
SYSTEMD_DEFAULT_TIMEOUT = 90.0


def unit_setting(text: str, key: str) -> str | None:
    values = re.findall(rf"^{key}=(.*)$", text, re.M)
    return values[-1].strip() if values else None


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min|m)?", value)
    assert m, value
    return float(m.group(1)) * (60 if m.group(2) in ("min", "m") else 1)


def test_the_reload_command_gives_up_before_systemd_kills_it():
    text = UNIT.read_text()
    start = unit_setting(text, "TimeoutStartSec")
    limit = seconds(start) if start else SYSTEMD_DEFAULT_TIMEOUT
    command = unit_setting(text, "ExecReload")
    m = re.search(r"--timeout\s+(\d+(?:\.\d+)?)", command)
    wait = float(m.group(1)) if m else next(p.default for p in reload_cmd.params if p.name == "timeout")
    assert wait + 5 <= limit, (command, start)
