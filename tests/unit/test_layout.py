"""The package's layout: arrows run one way (ops -> supervisor -> worker ->
producer -> execution -> brokers -> core), no import cycle between modules
(imports inside functions included), and the supervisor never loads worker code.
Read from the source with `ast`, so an import anywhere in a module counts."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import mpqueue

ROOT = Path(mpqueue.__file__).parent
# Lower layers never import higher ones. mpqueue/__init__ is the public API over
# the producer; ipc, proc and tally import nothing of ours, logsetup only core.
# contrib (Django, Flask) sits above the producer; only a worker's boot loads it.
LAYERS = {"core": 0, "ipc": 0, "proc": 0, "logsetup": 0, "tally": 0, "brokers": 1, "execution": 2, "producer": 3,
          "": 4, "contrib": 4, "worker": 5, "supervisor": 6, "ops": 7, "web": 7, "examples": 8}
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = ["mpqueue", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def imports_of(name: str) -> set[str]:
    """Every mpqueue module `name` imports, at any depth of its code."""
    path = MODULES[name]
    package = name if is_package(name) else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "mpqueue"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "mpqueue":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in MODULES else base)
    return {m for m in out if m in MODULES} - {name}


GRAPH = {name: imports_of(name) for name in MODULES}


def layer(name: str) -> int:
    parts = name.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else ""]


def test_every_module_is_in_a_layer():
    assert all(layer(name) is not None for name in MODULES)


def test_imports_never_point_up_the_layers():
    upward = sorted(f"{a} -> {b}" for a, deps in GRAPH.items() for b in deps if layer(b) > layer(a))
    assert upward == []


def test_core_imports_nothing_outside_core():
    assert sorted(f"{a} -> {b}" for a, deps in GRAPH.items() if a.startswith("mpqueue.core")
                  for b in deps if not b.startswith("mpqueue.core")) == []


def find_cycle(graph) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_there_is_no_import_cycle():
    assert find_cycle(GRAPH) is None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_graph_sees_imports_inside_functions():
    assert "mpqueue.worker.process" in GRAPH["mpqueue.supervisor.handles"]      # only in the forked child


def test_no_module_is_longer_than_the_style_guide_asks():
    long = {name: n for name, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_supervisor_process_loads_no_worker_code():
    # The modules `mpqueue run` has loaded by the time its supervisor runs.
    code = ("import sys, mpqueue.ops.cli, mpqueue.supervisor; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('mpqueue'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "mpqueue.supervisor.loop" in loaded
    assert [m for m in loaded if m.startswith(("mpqueue.worker", "mpqueue.execution.runner"))] == []
