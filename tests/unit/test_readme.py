"""The README is a short front page (issue #30): at most ~200 lines, the quick start,
the test command and the way into the docs on its first screen, and every link in
it leads to a file of the repository (the details live in docs/, built and checked
by tests/unit/test_docs_reference.py)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
LINES = README.splitlines()
FIRST_SCREEN = "\n".join(LINES[:60])
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_readme_stays_short():
    assert len(LINES) <= 200


def test_the_first_screen_has_the_quick_start_the_test_command_and_the_docs():
    assert "## Quick start" in FIRST_SCREEN
    assert "bash .ci/run" in FIRST_SCREEN and ".venv/bin/python -m pytest -q" in FIRST_SCREEN
    assert "(docs/index.md)" in FIRST_SCREEN


def test_every_relative_link_names_a_file_that_exists():
    links = [t.split("#")[0] for t in LINK.findall(README) if not t.startswith(("http://", "https://", "#"))]
    assert len(links) >= 20
    missing = [t for t in links if not (ROOT / t).is_file()]
    assert missing == []

