"""The fenced code blocks of the README, bench/README.md and docs/ (issue #30): found,
sorted by what checks them, and, for shell blocks, cut into the commands they run.
Used by tests/e2e/test_docs_blocks.py, which runs them.

A block that no test can run is marked on its page, on the line right before
its fence, with the reason:

    <!-- not run: a systemd drop-in (tests/systemd runs the units) -->

An HTML comment: GitHub and Sphinx (MyST) show nothing of it. An unmarked block
that nothing runs or checks is an error, so "not run on purpose" can't be
mistaken for "forgotten"."""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "bench" / "README.md",
         *sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts)]
FENCE = re.compile(r"^(?P<indent>[ ]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)\n"
                   r"(?P<body>.*?)^(?P=indent)(?P=fence)[ ]*$", re.M | re.S)
MARK = re.compile(r"<!-- not run: (?P<why>[^\n]+?) -->[ ]*\n[ ]*$")
# docs/frameworks.md quotes the framework suite's apps whole (tests/frameworks/test_docs.py)
QUOTED = re.compile(r"`(tests/frameworks/apps/[\w/.]+)`:\n\n[ ]*$")
SHELL = {"sh", "shell", "bash", "console"}
TUTORIAL = ROOT / "docs" / "tutorial" / "first-service.md"


@dataclass
class Block:
    page: Path
    number: int          # 1, 2, ... on its page, directives not counted
    line: int
    lang: str            # "" for a fence without one
    text: str
    not_run: str | None  # the reason its marker gives
    quotes: str | None = None

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page.name}#{self.number}"


def blocks(page: Path, text: str | None = None) -> list[Block]:
    """The code blocks of a page, in order; MyST directives ({toctree}, {eval-rst},
    the reference's {mpqueue-...}) are not code, but {code-block} LANG is."""
    text = page.read_text() if text is None else text
    found = []
    for match in FENCE.finditer(text):
        info = match["info"].strip()
        if info.startswith("{"):
            directive, _, arg = info.partition(" ")
            if directive not in ("{code-block}", "{code}", "{sourcecode}"):
                continue
            info = arg
        before = text[:match.start()]
        indent = len(match["indent"])
        body = "".join(line[indent:] for line in match["body"].splitlines(keepends=True))
        mark, quote = MARK.search(before[-300:]), QUOTED.search(before[-200:])
        found.append(Block(page, len(found) + 1, before.count("\n") + 1, info.split()[0] if info else "", body,
                           mark["why"] if mark else None, quote[1] if quote else None))
    return found


def all_blocks() -> list[Block]:
    return [b for page in PAGES for b in blocks(page)]


# ---- shell blocks ----

# What the shell blocks run besides mpqctl and mpqueue, by how the command
# starts, and why no test here runs it.
NOT_RUN = {
    "systemctl": "needs systemd as PID 1: tests/systemd and tests/debian drive the units",
    "journalctl": "needs systemd's journal: tests/systemd reads it",
    "systemd-sysusers": "changes the host's users: the .deb's suite (tests/debian) covers it",
    "apt": "installs on the host: tests/debian installs the .deb",
    "apt-get": "installs on the host: .ci/run does",
    "install": "writes into /etc as root: tests/debian checks what the package installs",
    "chown": "changes /etc as root: tests/debian checks the package's modes",
    "chmod": "changes /etc as root: tests/debian checks the package's modes",
    "cp": "writes into /etc: the test's sandbox has the service files already",
    "mv": "moves node_exporter's file: another tool's directory",
    "packaging/debian/build.sh": "builds the .deb: tests/debian builds and installs it",
    "python3 -m venv": "makes a virtualenv: the suite runs in one",
    ".venv/bin/pip": "installs packages: the suite's virtualenv has them",
    "pip": "installs packages: the suite's virtualenv has them",
    "bash .ci/run": "the whole CI run",
    "MPQUEUE_DEB_TEST=1": "the Debian package's suite (tests/debian)",
    ".venv/bin/python -m sphinx": "builds the docs: tests/unit/test_docs_reference.py builds them",
    ".venv/bin/python -m bench": "the benchmark: minutes to hours",
    "man": "shows a built man page: tests/unit/test_docs_reference.py checks them",
    "curl": "needs a dashboard serving: tests/e2e/test_web*.py call its API",
    "sleep": "a wait for the workers to boot: the test polls for them instead",
    "kill %1": "stops the service started with `&` before it",
}
# mpqctl and mpqueue commands that a sandbox with an SQLite broker can run and
# finish; the others are only parsed (their commands and options must exist).
RUNS = {"mpqctl": {"push", "status", "job", "failed", "retry", "cancel", "clean", "purge-failed", "pause", "resume",
                   "schedules"},
        "mpqueue": {"check"}}
PARSED_ONLY = {"web": "serves until stopped: tests/e2e/test_web*.py run it",
               "metrics": "reads a running service's metrics socket: tests/e2e/test_metrics.py",
               "reload": "signals a running service: tests/e2e/test_reload.py",
               "run": "runs in the foreground until stopped (with `&`, the test runs it)"}


@dataclass
class Command:
    argv: list[str]              # program first (its path as written), then its arguments
    background: bool = False
    loop: tuple[str, list[str]] | None = None     # `for VAR in VALUES; do ...; done`
    words: list[str] = field(default_factory=list)

    @property
    def program(self) -> str:
        return Path(self.argv[0]).name if self.argv else ""


def logical_lines(text: str) -> list[str]:
    """The block's command lines: continuations joined, blank and comment lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def commands(line: str) -> list[Command]:
    """One shell line cut at ;, &&, || and | into its commands (a heredoc's input
    and redirections dropped); `CMD &` is a background command; a `for` loop is one
    command with the loop's variable and values."""
    loop = re.fullmatch(r"\s*for (\w+) in ([^;]+); do (.*); done\s*(#.*)?", line)
    if loop:
        inner = commands(loop[3])
        for c in inner:
            c.loop = (loop[1], loop[2].split())
        return inner
    line = re.sub(r"<<<.*", "", line)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split, lexer.commenters = True, "#"
    out, current, redirect = [], [], False
    for token in lexer:
        if token in (";", "&&", "||", "|", "&"):
            if current:
                out.append(Command(current, background=token == "&"))
            current, redirect = [], False
        elif token in (">", ">>", "<", "2>"):
            redirect = True
        elif not redirect:
            current.append(token)
    if current:
        out.append(Command(current))
    return out


def not_run_reason(cmd: Command) -> str | None:
    """Why a command other than mpqctl/mpqueue is not run, or None if it is unknown."""
    text = " ".join(cmd.argv)
    for start, why in NOT_RUN.items():
        if text == start or text.startswith(start + " "):
            return why
    return None


def shell_plan(block: Block) -> list[tuple[Command, str]]:
    """Each command of a shell block with what the test does with it: "run",
    "background", "stop", "parse" (only parsed: reason after a colon), "skip: reason",
    or "unknown" (an error unless the block is marked)."""
    plan = []
    for line in logical_lines(block.text):
        for cmd in commands(line):
            if cmd.program in RUNS:
                name = subcommand(cmd)
                if name == "run" and cmd.background:
                    plan.append((cmd, "background"))
                elif name in RUNS[cmd.program]:
                    plan.append((cmd, "run"))
                else:
                    plan.append((cmd, f"parse: {PARSED_ONLY.get(name, 'not run')}"))
            elif " ".join(cmd.argv) == "kill %1":
                plan.append((cmd, "stop"))
            else:
                why = not_run_reason(cmd)
                plan.append((cmd, f"skip: {why}" if why else "unknown"))
    return plan


def subcommand(cmd: Command) -> str | None:
    """The command word after the program's own options (-s NAME, --json, ...)."""
    args, i = cmd.argv[1:], 0
    while i < len(args):
        if args[i] in ("-s", "-c", "-b", "--service", "--config", "--broker"):
            i += 2
        elif args[i].startswith("-"):
            i += 1
        else:
            return args[i]
    return None


def problems(block: Block) -> list[str]:
    """Why a block is neither run, nor checked elsewhere, nor marked: [] if fine."""
    if block.not_run is not None:
        return []
    if block.lang in SHELL:
        plan = shell_plan(block)
        unknown = [" ".join(c.argv) for c, what in plan if what == "unknown"]
        if unknown:
            return [f"{block.id}: commands no test runs and none is known not to: {unknown}"]
        if not any(what in ("run", "background") for _, what in plan):
            return [f"{block.id}: runs no mpqctl/mpqueue command a test can run: mark it `<!-- not run: why -->`"]
        return []
    if block.lang == "python" and block.quotes:
        return []                   # the framework suite runs the quoted file
    if block.lang in ("python", "yaml"):
        return []                   # run by test_docs_blocks / checked by test_docs_yaml (each says if not)
    return [f"{block.id}: a {block.lang or 'plain'} block no test runs: mark it `<!-- not run: why -->`"]


# ---- the sandbox the shell blocks run in ----

class Sandbox:
    """A temp SQLite broker per service, the services orders and example (the
    package's example.yaml) and shop (the tutorial's) in a temp config directory,
    and `.venv/bin` and `conf/example.yaml` as the pages' relative paths expect."""

    def __init__(self, tmp: Path):
        self.dir, self.ids, self.background, self.workers = tmp, {}, None, 1
        broker = "sqlite:///var/lib/mpqueue/{name}/queue.db"
        example = (ROOT / "conf" / "example.yaml").read_text()
        assert broker in example
        example = example.replace(broker, f"sqlite://{tmp}/{{name}}.db")
        for rel in ("conf/example.yaml", "etc/example.yaml", "etc/orders.yaml"):
            (tmp / rel).parent.mkdir(exist_ok=True)
            (tmp / rel).write_text(example)
        tutorial = blocks(TUTORIAL)
        shop = yaml.safe_load(next(b.text for b in tutorial if b.lang == "yaml" and "imports:" in b.text))
        shop.update(broker=f"sqlite://{tmp}/{{name}}.db", path=[str(tmp / "code")])
        (tmp / "etc" / "shop.yaml").write_text(yaml.safe_dump(shop))
        (tmp / "code" / "shop").mkdir(parents=True)
        (tmp / "code" / "shop" / "__init__.py").write_text("")
        (tmp / "code" / "shop" / "tasks.py").write_text(next(b.text for b in tutorial if b.lang == "python"))
        (tmp / ".venv").symlink_to(Path(sys.executable).parent.parent)
        bin_dir = str(Path(sys.executable).parent)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MPQUEUE_")}
        self.env.update(MPQUEUE_CONFIG_DIR=str(tmp / "etc"), MPQUEUE_RUNTIME_DIR=str(tmp / "run"),
                        PATH=f"{bin_dir}:{os.environ['PATH']}")

    def expand(self, arg: str, cmd: Command, value: str | None = None) -> str:
        """The page's placeholders: $VAR of a for loop, ID_OF_TASK (the id its push
        printed), and the example id of `job` (the last id pushed)."""
        if cmd.loop and value is not None:
            arg = arg.replace(f"${cmd.loop[0]}", value)
        if m := re.fullmatch(r"ID_OF_(\w+)", arg):
            return self.ids.get(m[1].lower(), arg)
        if re.fullmatch(r"[0-9a-f]{8}", arg) and self.ids:
            return self.ids["last"]
        return arg

    def run(self, argv: list[str]) -> subprocess.CompletedProcess:
        done = subprocess.run(argv, cwd=self.dir, env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
        if subcommand(Command(argv)) == "push":
            task = next(a for a in argv if ":" in a and "." in a)
            job_id = done.stdout.strip()
            assert re.fullmatch(r"[\w.-]+", job_id), f"push printed {done.stdout!r}, not a job id"
            self.ids[task.rpartition(":")[2]] = self.ids["last"] = job_id
        return done

    def status(self, config: str) -> dict:
        done = self.run([".venv/bin/mpqctl", "--config", config, "--json", "status"])
        return json.loads(done.stdout)

    def start(self, argv: list[str]):
        self.log = open(self.dir / "service.log", "ab")
        self.background = subprocess.Popen(argv, cwd=self.dir, env=self.env, stdout=self.log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        self.config = argv[argv.index("--config") + 1]

    def stop(self) -> int | None:
        proc, self.background = self.background, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)       # any worker left behind
        except ProcessLookupError:
            pass
        proc.wait()
        self.log.close()
        return proc.returncode


def booted(box: Sandbox, workers: int) -> bool:
    """The service started with `&` has its node record, with `workers` workers."""
    assert box.background.poll() is None, (box.dir / "service.log").read_text()
    nodes = box.status(box.config)["nodes"]
    return [sum(q["workers"] for q in n["queues"].values()) for n in nodes] == [workers]
