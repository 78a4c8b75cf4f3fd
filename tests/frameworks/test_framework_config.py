"""The `framework:` key: what it accepts, one line for what it refuses (exit 78
from `mpqueue run`), and a core install that never loads a framework."""
import subprocess
import sys

import pytest

from mpqueue.core.config import ConfigError, parse_config
from mpqueue.core.schema import FrameworkConfig

MINIMAL = {"broker": "redis://127.0.0.1:6379/0", "imports": ["app.tasks"], "queues": {"default": {}}}


def parse(framework):
    return parse_config({**MINIMAL, "framework": framework}, "shop.yaml", "shop")


@pytest.mark.parametrize("raw, parsed", [
    ({"django": "myproject.settings"}, FrameworkConfig("django", "myproject.settings")),
    ({"django": None}, FrameworkConfig("django", None)),
    ({"flask": "myapp:create_app"}, FrameworkConfig("flask", "myapp:create_app")),
    ({"flask": "myapp.wsgi:app"}, FrameworkConfig("flask", "myapp.wsgi:app")),
    (None, None),
])
def test_accepted(raw, parsed):
    assert parse(raw).framework == parsed


def test_absent_is_none():
    assert parse_config(MINIMAL, "shop.yaml", "shop").framework is None


@pytest.mark.parametrize("raw, message", [
    ("django", "shop.yaml: framework: expected a mapping with one key, django or flask"),
    ({}, "shop.yaml: framework: expected a mapping with one key"),
    ({"django": "a.settings", "flask": "a:b"}, "shop.yaml: framework: expected a mapping with one key"),
    ({"rails": "x"}, "shop.yaml: framework.rails: unknown key; allowed keys: django, flask"),
    ({"djang": "x"}, "shop.yaml: framework.djang: unknown key; did you mean 'django'?"),
    ({"django": 3}, "shop.yaml: framework.django: expected a settings module such as myproject.settings"),
    ({"django": "my-project.settings"}, "framework.django: expected a settings module"),
    ({"flask": "myapp"}, "shop.yaml: framework.flask: expected an app factory or app as 'module:name'"),
    ({"flask": None}, "framework.flask: expected an app factory or app as 'module:name'"),
])
def test_refused_on_one_line(raw, message):
    with pytest.raises(ConfigError) as info:
        parse(raw)
    text = str(info.value)
    assert message in text and "\n" not in text, text


def test_mpqueue_run_refuses_a_bad_framework_with_exit_78(tmp_path):
    path = tmp_path / "shop.yaml"
    path.write_text("broker: redis://127.0.0.1:1/0\nimports: [app.tasks]\nqueues: {default: {}}\n"
                    "framework: {django: [1, 2]}\n")
    out = subprocess.run([sys.executable, "-m", "mpqueue.ops.cli", "run", "--config", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 78
    assert out.stderr.strip().splitlines() == [
        "mpqueue: shop.yaml: framework.django: expected a settings module such as myproject.settings, or null for "
        "$DJANGO_SETTINGS_MODULE, got [1, 2]"]


def test_the_core_and_a_worker_without_a_framework_load_neither_django_nor_flask():
    code = ("import sys, mpqueue, mpqueue.contrib, mpqueue.worker.process, mpqueue.ops.cli; "
            "print(' '.join(m for m in ('django', 'flask', 'fastapi') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
