"""docs/frameworks.md quotes the test apps whole: each quoted block is the file
the tests run, so the documented examples are the tested ones."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "frameworks.md"
QUOTE = re.compile(r"^`(tests/frameworks/apps/[\w/.]+)`:\n\n```\w*\n(.*?)^```$", re.M | re.S)


def test_every_quoted_example_is_the_file_the_tests_run():
    quotes = QUOTE.findall(DOC.read_text())
    assert len(quotes) >= 8
    for path, text in quotes:
        assert (ROOT / path).read_text() == text, f"docs/frameworks.md quotes an old {path}"


def test_each_framework_has_its_section_and_the_readme_links_it():
    text = DOC.read_text()
    for title in ("## Django", "## Flask", "## FastAPI"):
        assert f"\n{title}" in text
    assert "docs/frameworks.md" in (ROOT / "README.md").read_text()


def test_each_framework_has_a_testing_section_quoting_the_example_tests_the_suite_runs():
    text = DOC.read_text()
    quoted = {path for path, _ in QUOTE.findall(text)}
    for title in ("### Testing a Django project", "### Testing a Flask app", "### Testing a FastAPI app"):
        assert f"\n{title}\n" in text
    assert {"tests/frameworks/apps/shop/tests.py", "tests/frameworks/apps/shop/pytest_tests.py",
            "tests/frameworks/apps/blog/tests.py", "tests/frameworks/apps/signup/tests.py"} <= quoted
    assert "## Where `task.push()` goes: one rule" in text
