"""The reference in docs/ is generated from the code (docs/_ext/mpqueue_reference.py):
every YAML key, command option, metric, failure type and exit status in the code is in
the built pages, and the build fails when one has no description. Building needs the
docs extra (`pip install -e '.[docs]'`); the generators' own checks run without it."""
from __future__ import annotations

import html
import re
import sys
from pathlib import Path

import click
import pytest

import mpqueue
from mpqueue import ipc, tally
from mpqueue.core import schema
from mpqueue.ops import cli, ctl

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
import mpqueue_facts as ref  # noqa: E402

from tests.support import require_sphinx, sphinx  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The site and the man pages, built with warnings as errors."""
    require_sphinx()
    out = tmp_path_factory.mktemp("docs")
    for builder in ("html", "man"):
        done = sphinx(builder, DOCS, out / builder)
        assert done.returncode == 0, f"sphinx -W -b {builder} failed:\n{done.stdout}\n{done.stderr}"
    return out


def page(built: Path, name: str) -> str:
    return html.unescape((built / "html" / name).read_text())


def commands(group: click.Group, prefix: str = ""):
    for name, command in sorted(group.commands.items()):
        yield f"{prefix}{name}", command
        if isinstance(command, click.Group):
            yield from commands(command, f"{prefix}{name} ")


# ---- the generators against the code (no Sphinx needed) ----

def test_every_schema_table_is_rendered_by_the_extension():
    tables = {name for name, value in vars(schema).items() if name.endswith("_KEYS") and isinstance(value, dict)}
    assert tables == set(ref.TABLES)


def test_every_key_has_a_row_with_its_type_default_and_reload_behaviour():
    for table in ref.TABLES:
        rows = ref.key_rows(table)
        assert [r["name"] for r in rows] == list(getattr(schema, table))
        for row in rows:
            assert row["doc"] and row["type"] and row["default"] and row["applies"]
    workers = next(r for r in ref.key_rows("QUEUE_KEYS") if r["name"] == "workers")
    assert (workers["type"], workers["default"], workers["limits"]) == ("integer", "3", "an integer >= 1")
    broker = next(r for r in ref.key_rows("SERVICE_KEYS") if r["name"] == "broker")
    assert broker["default"] == "none: required" and broker["applies"].startswith("on restart")


def test_a_key_without_a_doc_line_is_refused(monkeypatch):
    monkeypatch.setitem(schema.QUEUE_KEYS, "undocumented", schema.Key(int, 1, None, " "))
    with pytest.raises(ValueError, match="undocumented.*no doc line"):
        ref.key_rows("QUEUE_KEYS")


def test_every_metric_family_the_endpoint_renders_is_listed():
    names = {row["name"] for row in ref.metric_rows()}
    assert {"mpqueue_jobs", "mpqueue_queue_jobs", "mpqueue_worker_restarts", "process_open_fds"} <= names
    assert all(row["doc"] for row in ref.metric_rows())


def test_exit_codes_are_read_from_ipc():
    assert {s: name for s, (name, _) in ref.exit_codes().items()} == {
        ipc.EXIT_OK: "EXIT_OK", ipc.EXIT_FAILED: "EXIT_FAILED", ipc.EX_USAGE: "EX_USAGE",
        ipc.EX_SOFTWARE: "EX_SOFTWARE", ipc.EX_CONFIG: "EX_CONFIG"}


def test_the_redis_key_layout_is_the_header_of_keys_lua():
    layout = ref.lua_key_layout()
    assert "ready:0..9  LIST" in layout and "--" not in layout.splitlines()[0]


# ---- the built pages against the code ----

def test_the_configuration_reference_has_every_key_and_no_other(built):
    text = page(built, "reference/man/mpqueue.yaml.html")
    documented = set(re.findall(r'id="key-([\w.-]+)"', text))
    expected = {re.sub(r"[^a-z0-9]+", "-", row["path"].lower()).strip("-")
                for table in ref.TABLES for row in ref.key_rows(table)}
    assert documented == expected
    assert "an integer from 1 to 1000" in text       # concurrency's limits


def test_every_command_and_option_is_in_its_man_page(built):
    for group, man in ((cli.main, "mpqueue.1"), (ctl.main, "mpqctl.1")):
        text = (built / "man" / man).read_text().replace("\\-", "-")
        for name, command in commands(group):
            assert name.split()[-1] in text, f"{man} lacks the command {name}"
            for param in command.params:
                for opt in param.opts if isinstance(param, click.Option) else ():
                    assert opt in text, f"{man} lacks {name} {opt}"


def test_the_package_installs_every_man_page_the_docs_define():
    # docs/conf.py's man_pages, built by packaging/debian/rules into debian/man/
    conf = {"__file__": str(DOCS / "conf.py")}
    exec(compile((DOCS / "conf.py").read_text(), "conf.py", "exec"), conf)
    defined = {f"debian/man/{name}.{section}" for _, name, _, _, section in conf["man_pages"]}
    listed = set((ROOT / "packaging" / "debian" / "mpqueue.manpages").read_text().split())
    assert defined == listed == {"debian/man/mpqueue.1", "debian/man/mpqctl.1", "debian/man/mpqueue.yaml.5"}
    assert "sphinx -W -q -b man -d debian/.doctrees docs debian/man" in (ROOT / "packaging/debian/rules").read_text()


def test_the_man_pages_are_the_three_the_package_installs(built):
    assert sorted(p.name for p in (built / "man").glob("[!.]*")) == ["mpqctl.1", "mpqueue.1", "mpqueue.yaml.5"]


def test_every_public_name_has_its_entry_in_the_api_reference(built):
    text = page(built, "reference/api.html")
    missing = [name for name in mpqueue.__all__ if f'id="mpqueue.{name}"' not in text]
    assert missing == []


def test_the_man_pages_carry_the_package_version(built):
    for page in ("mpqueue.1", "mpqctl.1", "mpqueue.yaml.5"):
        heading = next(line for line in (built / "man" / page).read_text().splitlines() if line.startswith(".TH"))
        assert f'"{mpqueue.__version__}"' in heading, (page, heading)


def test_every_metric_failure_type_and_exit_status_is_on_its_page(built):
    metrics = page(built, "reference/metrics.html")
    assert all(f'id="metric-{row["name"].replace("_", "-")}"' in metrics for row in ref.metric_rows())
    failures = page(built, "reference/failures.html")
    assert all(f'id="failure-{kind.replace("_", "-")}"' in failures for kind in tally.KINDS)
    statuses = page(built, "reference/man/mpqueue.html")
    assert all(f'id="exit-{status}"' in statuses for status in ref.exit_codes())


def test_a_failure_type_the_page_does_not_describe_fails_the_build(tmp_path):
    # Given a page whose list lacks one of the code's failure types
    require_sphinx()
    (tmp_path / "conf.py").write_text(f"import sys\nsys.path.insert(0, {str(DOCS / '_ext')!r})\n"
                                      "extensions = ['mpqueue_reference']\n")
    kinds = "\n".join(f"   {k}: described" for k in tally.KINDS[1:])
    (tmp_path / "index.rst").write_text(f"Failures\n========\n\n.. mpqueue-failures::\n\n{kinds}\n"
                                        + "".join(f".. mpqueue-keys:: {t}\n\n" for t in ref.TABLES))
    # When it is built, then the build fails naming the missing one
    done = sphinx("html", tmp_path, tmp_path / "out")
    assert done.returncode != 0 and tally.KINDS[0] in done.stderr


def test_a_key_without_a_doc_line_fails_the_build(tmp_path):
    require_sphinx()
    (tmp_path / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(DOCS / '_ext')!r})\n"
        "from mpqueue.core import schema\n"
        "schema.WEB_KEYS['new_key'] = schema.Key(int, 1, None, '')\n"
        "extensions = ['mpqueue_reference']\n")
    (tmp_path / "index.rst").write_text("Keys\n====\n\n" + "".join(f".. mpqueue-keys:: {t}\n\n" for t in ref.TABLES))
    done = sphinx("html", tmp_path, tmp_path / "out")
    assert done.returncode != 0 and "new_key" in done.stderr and "no doc line" in done.stderr


def test_every_metric_the_pages_name_is_one_the_endpoint_renders():
    # The how-tos (metrics, alert rules, the dashboard) name metrics by hand: each
    # must be a family of the endpoint, as exposed (a counter's _total, a histogram's parts).
    families = {row["name"]: row["type"] for row in ref.metric_rows()}
    exposed = {n for n, t in families.items() if t not in ("counter", "histogram")}
    exposed |= {f"{n}_total" for n, t in families.items() if t == "counter"}
    exposed |= {f"{n}{part}" for n, t in families.items() if t == "histogram" for part in ("", "_bucket", "_sum",
                                                                                           "_count")}
    pages = [ROOT / "README.md", *(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)]
    named = {m for p in pages for m in re.findall(r"\b(?:mpqueue|process)_[a-z_]+[a-z]", p.read_text())}
    named -= {"mpqueue_reference", "mpqueue_facts"}            # the docs extension's modules
    assert len(named) >= 10
    assert sorted(named - exposed) == []


def test_every_command_the_pages_show_exists():
    # In code (spans and blocks) of the README and the docs, `mpqctl [options] CMD` and
    # `mpqueue CMD` name commands of the click groups. Not counted: `mpqueue` after a word
    # (`manage.py mpqueue`, `flask mpqueue`, `apt install mpqueue`) or before a colon (a
    # process title, `mpqueue orders: supervisor`).
    pages = [ROOT / "README.md", *(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)]
    code = "\n".join(c for p in pages for c in re.findall(r"```.*?```|`[^`\n]+`", p.read_text(), re.S))
    option = r"(?: +(?:-s|-c|-b|--config|--service|--broker) +[^ `]+| +--json)*"
    ctl_used = set(re.findall(rf"\bmpqctl{option} +([a-z][a-z-]+)", code))
    cli_used = set(re.findall(r"(?<![\w.] )\bmpqueue +([a-z]+)\b(?!:)", code))
    assert len(ctl_used) >= 10 and {"run", "check", "reload", "web"} <= cli_used
    assert sorted(ctl_used - set(ctl.main.commands)) == []
    assert sorted(cli_used - set(cli.main.commands)) == []
