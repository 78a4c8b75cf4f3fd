"""Every fenced code block of the README, bench/README.md and docs/ is run by a test,
checked by one, or marked on its page as not run, with the reason (issue #30;
tests/docs_blocks.py finds and sorts them, and says how a block is marked):

- python: each page's blocks run in order, in one module per page, on `sync://`
  (a `redis://` URL or a service's YAML the page names is swapped for it; the
  `shop.tasks` it pushes to is written to a temp directory), then what the page
  states is asserted (PYTHON below). Blocks quoting the framework suite's apps are
  run by that suite (tests/frameworks/test_docs.py checks the quotes).
- yaml: tests/unit/test_docs_yaml.py validates every service file and fragment;
  another tool's YAML must be marked.
- shell: every mpqctl and mpqueue command is parsed by the real click groups (an
  unknown command or option fails), and those that finish on a broker are run in a
  sandbox: a temp SQLite broker, the services orders, shop and example in a temp
  config directory, `mpqueue run ... &` started and stopped. Other commands
  (systemctl, apt, ...) are listed in docs_blocks.NOT_RUN with the reason.
- anything else (ini, output, diagrams) must be marked.
"""
from __future__ import annotations

import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import mpqueue
from mpqueue.ops import cli, ctl
from mpqueue.producer import default as default_client
from tests import docs_blocks as db
from tests.support import wait_for
from tests.unit.test_docs_yaml import service as service_yaml

ROOT = db.ROOT
BLOCKS = db.all_blocks()


def page_blocks(rel: str, lang: str) -> list[db.Block]:
    return [b for b in BLOCKS if b.page == ROOT / rel and b.lang == lang and b.not_run is None and not b.quotes]


# ---- every block is accounted for ----

def test_the_pages_have_blocks_of_every_kind():
    langs = {b.lang for b in BLOCKS}
    assert {"python", "yaml", "sh", "ini", ""} <= langs and len(BLOCKS) >= 60


def test_every_block_is_run_checked_or_marked_not_run():
    assert [p for b in BLOCKS for p in db.problems(b)] == []


def test_every_yaml_block_is_an_mpqueue_service_or_marked():
    other = [b.id for b in BLOCKS if b.lang == "yaml" and b.not_run is None
             and service_yaml(yaml.safe_load(b.text)) is None]
    assert other == []


def test_every_page_with_python_blocks_has_its_run_here_or_elsewhere():
    pages = {str(b.page.relative_to(ROOT)) for b in BLOCKS if b.lang == "python" and b.not_run is None
             and not b.quotes}
    assert sorted(pages - set(PYTHON) - set(PYTHON_ELSEWHERE)) == []


def test_an_unmarked_block_nothing_runs_fails_and_a_marked_one_does_not(tmp_path):
    page = tmp_path / "page.md"
    text = ("```ini\n[Service]\nUser=x\n```\n\n<!-- not run: a drop-in -->\n```ini\n[Service]\n```\n\n"
            "```sh\nsystemctl reload mpqueue@orders\n```\n\n```sh\nrm -rf /srv/shop\n```\n\n"
            "```sh\nmpqctl -s orders status\n```\n")
    found = db.blocks(page, text)
    assert [b.not_run for b in found] == [None, "a drop-in", None, None, None]
    assert [bool(db.problems(b)) for b in found] == [True, False, True, True, False]
    assert "rm -rf /srv/shop" in db.problems(found[3])[0]


def test_a_broken_python_block_fails(tmp_path):
    page = tmp_path / "page.md"
    (broken,) = db.blocks(page, "```python\nimport mpqueue\nmpqueue.Client('sync://').psuh('q', 'm:f')\n```\n")
    with pytest.raises(AttributeError, match="psuh"):
        run_python([broken], types.ModuleType("docpage_selftest").__dict__, {})


def test_an_unknown_option_in_a_shell_block_fails(tmp_path):
    page = tmp_path / "page.md"
    (block,) = db.blocks(page, "```sh\nmpqctl -s orders push default m:f --priorty 3\n```\n")
    ((cmd, what),) = db.shell_plan(block)
    assert what == "run"
    with pytest.raises(Exception, match="--priorty"):
        parse(cmd.argv)


# ---- python ----

SHOP_TASKS = '''
import mpqueue

SENT = []


@mpqueue.task(queue="emails")
def send_email(to, subject):
    SENT.append((to, subject))


@mpqueue.task(queue="orders")
def charge(order_id):
    return {"order": order_id, "charged": True}


@mpqueue.task(queue="orders", retries=0)
def decline(order_id):
    raise ValueError(f"order {order_id} declined")


@mpqueue.task(queue="reports")
def report():
    return "report"


@mpqueue.task(queue="emails")
def whoami():
    job = mpqueue.current_job()
    return {k: getattr(job, k) for k in ("id", "queue", "task", "attempt", "max_attempts", "worker_index")}
'''
CONCURRENCY_GIVEN = '''
import mpqueue

POSTS = []


class _Response:
    def raise_for_status(self):
        pass


class _Post:
    def __init__(self, url, json):
        POSTS.append(("loop", url, json))

    async def __aenter__(self):
        return _Response()

    async def __aexit__(self, *exc):
        return False


class _Session:
    def post(self, url, json):
        return _Post(url, json)


def session():
    return _Session()


class requests:
    @staticmethod
    def post(url, json, timeout):
        POSTS.append(("thread", url, json))
        return _Response()
'''


@dataclass
class Page:
    check: object                 # (module namespace, shop.tasks module) -> None: what the page states
    given: str = ""               # what the page's code assumes the reader has
    swap: tuple = ()              # (text on the page, what the test runs instead)
    needs: tuple = ()             # modules the page's code imports (an extra of the package)


def check_readme(ns, shop):
    job_id = ns["job_id"]                 # "returns the job id": a str, and a handle
    assert isinstance(job_id, str) and job_id.status() == "done" and job_id.queue == "emails"


def check_tasks(ns, shop):
    mpqueue.connect("sync://")
    assert ns["send_email"].push("bo@example.org", "hi").status() == "done"
    assert ns["BuildReport"].push(7).status() == "done"
    # current_job()'s fields, as the comment lists them
    assert set(shop.whoami.push().result(timeout=5)) == {"id", "queue", "task", "attempt", "max_attempts",
                                                         "worker_index"}
    from fastapi.testclient import TestClient
    with TestClient(ns["app"]) as http:               # runs the lifespan: aclose() at its end
        response = http.post("/signup", params={"email": "ada@example.org"})
        assert response.status_code == 200
        assert ns["client"].status(response.json()["job"]) == "done"
    assert shop.SENT == [("ada@example.org", "welcome")]


def check_job_handles(ns, shop):
    assert ns["value"] == {"order": 42, "charged": True}
    assert ns["h"] == "order-42" and ns["h"].duplicate is False      # sync:// ran the first: none was waiting
    client, JobFailed = ns["client"], ns["JobFailed"]
    assert client.status(ns["h"].id, queue="orders") == "done"
    assert ns["h"].cancel(kill=True) is not None
    failing = client.push("orders", "shop.tasks:decline", args=[7])
    with pytest.raises(JobFailed) as failed:                # exc.type, exc.message, exc.error
        failing.result(timeout=5)
    assert failed.value.type == "error" and "order 7 declined" in failed.value.message
    assert failed.value.error["attempts"] == 1
    assert failing.status() == "failed"


def check_concurrency(ns, shop):
    mpqueue.connect("sync://")
    assert ns["deliver"].push("https://a.example/hook", {"n": 1}).status() == "done"
    assert ns["deliver_sync"].push("https://b.example/hook", {"n": 2}).status() == "done"
    assert ns["POSTS"] == [("loop", "https://a.example/hook", {"n": 1}), ("thread", "https://b.example/hook", {"n": 2})]


def fastapi_swap() -> tuple:
    """FastAPI(lifespan=...) is 0.93's; on Debian 12's 0.92 the page says to set the router's."""
    try:
        from importlib.metadata import version
        old = tuple(int(p) for p in version("fastapi").split(".")[:2]) < (0, 93)
    except Exception:
        return ()
    return (("app = FastAPI(lifespan=lifespan)", "app = FastAPI()\napp.router.lifespan_context = lifespan"),) if old else ()


PYTHON = {
    "README.md": Page(check_readme, swap=(("/etc/mpqueue/shop.yaml", "{service}"),)),
    "docs/howto/tasks.md": Page(check_tasks, given="smtp_busy = False",
                                swap=(("redis://127.0.0.1:6379/0", "sync://"), *fastapi_swap()),
                                needs=("fastapi", "httpx")),
    "docs/howto/job-handles.md": Page(check_job_handles, swap=(("redis://localhost:6379/0", "sync://"),)),
    "docs/howto/concurrency.md": Page(check_concurrency, given=CONCURRENCY_GIVEN),
}
PYTHON_ELSEWHERE = {"docs/tutorial/first-service.md": "tests/unit/test_docs_tutorial.py runs its task module"}


def run_python(blocks, ns, swaps, given=""):
    exec(compile(given, "given", "exec"), ns)
    for block in blocks:
        text = block.text
        for old, new in swaps.items():
            text = text.replace(old, new)
        # compiled at the page's own line numbers, so a traceback points into the page
        exec(compile("\n" * block.line + text, f"{block.page}", "exec"), ns)


def forget(prefixes):
    for name in [m for m in sys.modules if m.split(".")[0] in prefixes]:
        del sys.modules[name]


@pytest.fixture
def shop(tmp_path, monkeypatch):
    """A `shop.tasks` of our own on sys.path, and no default client nor
    MPQUEUE_* from the environment, before and after."""
    for var in ("MPQUEUE_BROKER", "MPQUEUE_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    forget({"shop"})
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "tasks.py").write_text(SHOP_TASKS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import shop.tasks
    yield shop.tasks
    default_client.set_default_client(None)
    forget({"shop"})


@pytest.mark.parametrize("rel", sorted(PYTHON))
def test_the_python_blocks_of_the_page_run_and_do_what_it_says(rel, shop, tmp_path):
    page, blocks = PYTHON[rel], page_blocks(rel, "python")
    for module in page.needs:
        pytest.importorskip(module)
    assert blocks, f"{rel} has no python block left to run"
    # the page's own service file when it has one, on sync://
    cfg = next((yaml.safe_load(b.text) for b in page_blocks(rel, "yaml") if "imports:" in b.text),
               {"imports": ["shop.tasks"], "queues": {"emails": {}}})
    cfg.update(broker="sync://", path=[str(tmp_path)])
    (tmp_path / "service.yaml").write_text(yaml.safe_dump(cfg))
    swaps = {old: new.format(service=tmp_path / "service.yaml") for old, new in page.swap}
    assert all(any(old in b.text for b in blocks) for old in swaps), "a swap no longer matches the page"
    name = "docpage_" + re.sub(r"\W", "_", rel)
    module = types.ModuleType(name)
    sys.modules[name] = module            # sync:// finds the page's tasks by module name
    try:
        run_python(blocks, module.__dict__, swaps, page.given)
        page.check(module.__dict__, shop)
    finally:
        del sys.modules[name]


# ---- shell ----

def parse(argv: list[str]):
    """Parse a command line with the real click group, as far as its subcommand's
    options: an unknown command or option, or a bad argument, raises."""
    group = {"mpqctl": ctl.main, "mpqueue": cli.main}[Path(argv[0]).name]
    ctx = group.make_context(Path(argv[0]).name, list(argv[1:]))
    rest = [*(getattr(ctx, "_protected_args", None) or ctx.protected_args), *ctx.args]
    name, command, args = group.resolve_command(ctx, rest)
    command.make_context(name, args, parent=ctx)


SHELL_RUN = [b for b in BLOCKS if b.lang in db.SHELL and b.not_run is None]
SHELL_ALL = [b for b in BLOCKS if b.lang in db.SHELL]


def test_every_mpqctl_and_mpqueue_line_of_every_shell_block_parses(sandbox):
    # Marked blocks included, and the ExecStart= of unit files. (Command names in
    # code spans are checked by test_docs_reference.py::test_every_command_the_pages_show_exists.)
    seen = 0
    units = [db.Block(b.page, b.number, b.line, "sh", "\n".join(re.findall(r"^ExecStart=(.+)$", b.text, re.M)), None)
             for b in BLOCKS if b.lang == "ini"]
    for block in [*SHELL_ALL, *units]:
        for cmd, _ in db.shell_plan(block):
            if cmd.program in db.RUNS:
                argv = [sandbox.expand(a, cmd, cmd.loop[1][0] if cmd.loop else None) for a in cmd.argv]
                try:
                    parse(argv)
                except Exception as exc:
                    pytest.fail(f"{block.id}: {' '.join(cmd.argv)}: {exc}")
                seen += 1
    assert seen >= 20


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    box = db.Sandbox(tmp_path)
    monkeypatch.chdir(tmp_path)              # the pages' relative paths (conf/example.yaml) parse from here
    yield box
    box.stop()


@pytest.mark.parametrize("rel", sorted({str(b.page.relative_to(ROOT)) for b in SHELL_RUN}))
def test_the_shell_blocks_of_the_page_run_on_an_sqlite_broker(rel, sandbox):
    # in order, in one sandbox: a later block looks at the jobs an earlier one pushed
    ran = []
    for line in (line for b in SHELL_RUN if b.page == ROOT / rel for line in db.logical_lines(b.text)):
        for cmd, what in db.shell_plan(db.Block(ROOT / rel, 0, 0, "sh", line + "\n", None)):
            if what == "background":
                sandbox.start([sandbox.expand(a, cmd) for a in cmd.argv])
                if m := re.search(r"#.*\b(\d+) worker processes", line):      # the page states how many
                    sandbox.workers = int(m[1])
            elif what == "stop":
                assert sandbox.stop() == 0, (sandbox.dir / "service.log").read_text()
            elif what.startswith("skip: a wait") and sandbox.background:
                wait_for(lambda: db.booted(sandbox, sandbox.workers), 30, what="the workers to boot")
            elif what == "run":
                for value in (cmd.loop[1] if cmd.loop else [None]):
                    argv = [sandbox.expand(a, cmd, value) for a in cmd.argv]
                    if m := re.search(r"#\s*(\d+) done", line):        # the page states the count
                        config = argv[argv.index("--config") + 1]
                        wait_for(lambda: sandbox.status(config)["queues"]["default"]["done_total"] == int(m[1]),
                                 30, what=f"{m[1]} jobs done")
                    sandbox.run(argv)
                    ran.append(" ".join(argv))
    assert ran and sandbox.background is None, "nothing ran, or a service started with & was never stopped"
    print("\n".join(ran))
