"""docs/howto/troubleshooting.md quotes the messages mpqueue prints: each entry's
term is a message with `…` for the parts that vary, and every fixed part of it
(10 characters or more) must still be in the code, so a reworded or removed
message fails here until the page follows it."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "howto" / "troubleshooting.md"
# a definition-list term that is one code span, followed by its definition
ENTRY = re.compile(r"^`([^`]+)`\n: ", re.M)


def source_text() -> str:
    files = [*(ROOT / "mpqueue").rglob("*.py"), *(ROOT / "mpqueue").rglob("*.lua")]
    return "\n".join(p.read_text() for p in files)


def fixed_parts(message: str) -> list[str]:
    return [part.strip() for part in message.split("…") if len(part.strip()) >= 10]


def test_the_page_has_its_entries():
    assert len(ENTRY.findall(PAGE.read_text())) >= 25


def test_every_quoted_message_is_still_printed_by_the_code():
    code = source_text()
    stale = {}
    for message in ENTRY.findall(PAGE.read_text()):
        parts = fixed_parts(message) or [message.strip()]
        missing = [p for p in parts if p not in code]
        if missing:
            stale[message] = missing
    assert stale == {}


def test_a_reworded_message_would_be_caught():
    assert fixed_parts("broker data format … is newer than this mpqueue understands") == [
        "broker data format", "is newer than this mpqueue understands"]
    assert "this message was never printed" not in source_text()
