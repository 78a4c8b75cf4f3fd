"""The tutorial's task module and service file (docs/tutorial/first-service.md) do
what the page says, run here against `sync://` (each job inline, its retries
not waited for): charge succeeds on its third attempt, refund fails for good after
its two, and the YAML passes the schema."""
import re
import sys
from pathlib import Path

import pytest
import yaml

import mpqueue
from mpqueue.core import schema

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "tutorial" / "first-service.md").read_text()


def block(lang: str, containing: str) -> str:
    return next(b for b in re.findall(rf"^```{lang}\n(.*?)^```$", PAGE, re.M | re.S) if containing in b)


def forget_shop():
    """Other suites (the framework tests' Django project) have a package named shop
    too: the page's must be imported from its own directory, not found cached."""
    for name in [m for m in sys.modules if m == "shop" or m.startswith("shop.")]:
        del sys.modules[name]


@pytest.fixture
def shop(tmp_path, monkeypatch):
    forget_shop()
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "tasks.py").write_text(block("python", "def charge"))
    cfg = yaml.safe_load(block("yaml", "imports: [shop.tasks]"))
    schema.parse_config(cfg, "shop.yaml", "shop")          # the page's file, as mpqueue check reads it
    cfg.update(broker="sync://", path=[str(tmp_path)])
    (tmp_path / "shop.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.syspath_prepend(str(tmp_path))
    client = mpqueue.Client.from_config(str(tmp_path / "shop.yaml"))
    yield client
    client.close()
    forget_shop()


def test_charge_is_retried_until_its_third_attempt_succeeds(shop):
    job = shop.push("orders", "shop.tasks:charge", args=[42, 19.99])
    assert job.result(timeout=5) == {"order": 42, "charged": 19.99, "attempt": 3}


def test_refund_fails_for_good_after_its_two_attempts(shop):
    job = shop.push("orders", "shop.tasks:refund", args=[7])
    with pytest.raises(mpqueue.JobFailed) as failed:
        job.result(timeout=5)
    assert "order 7 was never charged" in str(failed.value)
    assert job.status() == "failed"
