"""Every YAML block of the README and docs/ that configures a service is valid: a
whole service file is checked as `mpqueue check` checks it (core/schema.py), and a
fragment of top-level keys (a `schedules:` or `web:` example) is checked inside a
minimal service, so an example never shows a key or value the schema refuses.
Blocks of other tools' YAML (Prometheus) are left alone."""
import re
from pathlib import Path

import pytest
import yaml

from mpqueue.core import schema

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```ya?ml\n(.*?)^```$", re.M | re.S)
PAGES = [ROOT / "README.md", ROOT / "bench" / "README.md",
         *sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts)]
BASE = {"broker": "sqlite:///var/lib/mpqueue/{name}/queue.db", "imports": ["mpqueue.examples.tasks"],
        "queues": {"default": {}, "emails": {}, "reports": {}}}


def blocks():
    for page in PAGES:
        for n, match in enumerate(BLOCK.finditer(page.read_text()), 1):
            yield pytest.param(match.group(1), id=f"{page.relative_to(ROOT)}#{n}")


def service(data: dict) -> dict | None:
    """The service file a block stands for, or None for another tool's YAML."""
    if not isinstance(data, dict) or not set(data) <= set(schema.TOP_KEYS):
        return None
    return data if {"broker", "imports", "queues"} <= set(data) else {**BASE, **data}


@pytest.mark.parametrize("text", list(blocks()))
def test_every_service_yaml_example_passes_the_schema(text):
    cfg = service(yaml.safe_load(text))
    if cfg is None:
        pytest.skip("not an mpqueue configuration")
    schema.parse_config(cfg, "example.yaml", "example")


def test_the_docs_have_whole_service_examples_and_a_wrong_one_would_fail():
    whole = [t for p in PAGES for t in BLOCK.findall(p.read_text())
             if {"broker", "imports", "queues"} <= set(yaml.safe_load(t) or {})]
    assert len(whole) >= 3
    with pytest.raises(schema.ConfigError, match="workers"):
        schema.parse_config({**BASE, "queues": {"q": {"workers": "four"}}}, "example.yaml", "example")
