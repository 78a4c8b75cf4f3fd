"""The acceptance suite tests the units as shipped: its drop-ins may add what the
docs (docs/howto/systemd.md) tell operators to add, never take hardening away. Runs everywhere (no root)."""
from pathlib import Path

from tests.debian.dropins import DROPINS, FORBIDDEN, settings

HERE = Path(__file__).parent


def test_no_dropin_of_the_suite_relaxes_the_units_hardening():
    for name, (text, reason) in DROPINS.items():
        assert reason.strip(), name
        touched = sorted(set(settings(text)) & set(FORBIDDEN))
        assert touched == [], f"{name} sets {touched}: the suite must run the installed unit's hardening as shipped"


def test_the_suite_installs_units_only_through_the_declared_dropins():
    # No test module of the suite writes unit text of its own (a [Service] section,
    # or a Systemd.install call): the declared drop-ins above are the only changes.
    for path in HERE.glob("*.py"):
        if path.name in ("dropins.py", Path(__file__).name):
            continue
        text = path.read_text()
        assert "[Service]" not in text and ".install(" not in text, path.name


def test_settings_reads_keys_as_systemd_does():
    assert settings("[Service]\n# User=root\nUser = root\nPrivateUsers=no\n") == ["User", "PrivateUsers"]
