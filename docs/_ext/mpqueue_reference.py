"""References generated from mpqueue's code, so the docs cannot drift from it:

    mpqueue-keys TABLE      every key of a core/schema.py table (QUEUE_KEYS, ...): type,
                            default, limits (its check's `expected`), reload or restart, doc line
    mpqueue-metrics         every metric family the metrics endpoint renders
    mpqueue-failures        the failure types (tally.KINDS); the body gives each a line
    mpqueue-exit-codes      the exit statuses of ipc.py; the body gives each a line
    mpqueue-lua-keys        the Redis key layout: the header of brokers/lua/_keys.lua

The build fails (ExtensionError, whatever -W says) when a key has no doc line, a
schema table is rendered on no page, or a directive's body and the code disagree
on the failure types or exit codes. The directives build plain docutils nodes
(definition lists), which every builder renders: HTML, and man for mpqueue.yaml(5).
What the code says is read by mpqueue_facts.py (no Sphinx there), which
tests/unit/test_docs_reference.py checks against the code.
"""
from __future__ import annotations

import re

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.errors import ExtensionError

from mpqueue_facts import TABLES, exit_codes, failure_kinds, key_rows, lua_key_layout, metric_rows


# ---- docutils nodes ----

def inline(text: str) -> list[nodes.Node]:
    """Text whose `backticked` spans become literals."""
    out = []
    for i, part in enumerate(re.split(r"`([^`]+)`", text)):
        if part:
            out.append(nodes.literal(part, part) if i % 2 else nodes.Text(part))
    return out


def para(text: str) -> nodes.paragraph:
    return nodes.paragraph("", "", *inline(text))


def entry(term_text: str, anchor: str, *body: nodes.Node) -> nodes.definition_list_item:
    term = nodes.term("", "", nodes.literal(term_text, term_text))
    term["ids"].append(nodes.make_id(anchor))
    return nodes.definition_list_item("", term, nodes.definition("", *body))


def facts(pairs) -> nodes.paragraph:
    """'type: integer · default: 3 · ...' as one paragraph, the names emphasised."""
    p = nodes.paragraph()
    for i, (label, value) in enumerate(pairs):
        if i:
            p += nodes.Text(" · ")
        p += nodes.emphasis(label, label)
        p += nodes.Text(": ")
        p += inline(value)
    return p


def body_lines(content) -> dict[str, str]:
    """A directive body of 'name: text' lines (a line starting with spaces continues the one before)."""
    out, last = {}, None
    for line in content:
        if line.startswith((" ", "\t")) and last:
            out[last] += " " + line.strip()
        elif line.strip():
            name, _, text = line.partition(":")
            last = name.strip()
            out[last] = text.strip()
    return out


class KeysDirective(Directive):
    required_arguments = 1

    def run(self):
        table = self.arguments[0]
        if table not in TABLES:
            raise ExtensionError(f"mpqueue-keys: unknown table {table!r}; one of {', '.join(TABLES)}")
        try:
            rows = key_rows(table)
        except ValueError as exc:
            raise ExtensionError(str(exc)) from None
        env = self.state.document.settings.env
        _init(None, env, ())
        env.mpqueue_tables.setdefault(env.docname, set()).add(table)
        items = nodes.definition_list()
        for row in rows:
            items += entry(row["path"], f"key-{row['path']}", para(row["doc"]), facts(
                [("type", row["type"]), ("default", row["default"])]
                + ([("limits", row["limits"])] if row["limits"] else [])
                + [("applies", row["applies"])]))
        return [items]


class MetricsDirective(Directive):
    def run(self):
        items = nodes.definition_list()
        for row in metric_rows():
            labels = ", ".join(row["labels"]) or "none"
            items += entry(row["shown"], f"metric-{row['name']}", para(row["doc"]),
                           facts([("type", row["type"]), ("labels", labels)]))
        return [items]


class _CheckedList(Directive):
    """A list whose names come from the code and whose lines come from the body:
    the two must name the same things."""
    has_content = True
    what = ""

    def code(self) -> dict[str, str]:
        raise NotImplementedError

    def run(self):
        code, lines = self.code(), body_lines(self.content)
        if set(code) != set(lines):
            raise ExtensionError(f"{self.name}: the code has {sorted(code)}, the page describes {sorted(lines)}")
        items = nodes.definition_list()
        for name, note in code.items():
            items += entry(name, f"{self.what}-{name}", para(lines[name]), *([para(note)] if note else []))
        return [items]


class FailuresDirective(_CheckedList):
    what = "failure"

    def code(self):
        return {kind: "" for kind in failure_kinds()}


class ExitCodesDirective(_CheckedList):
    what = "exit"

    def code(self):
        return {str(status): f"`{name}` in ipc.py" for status, (name, _) in sorted(exit_codes().items())}


class LuaKeysDirective(Directive):
    def run(self):
        text = lua_key_layout()
        return [nodes.literal_block(text, text)]


def _purge(app, env, docname):
    _init(app, env, ())
    env.mpqueue_tables.pop(docname, None)


def _merge(app, env, docnames, other):
    _init(app, env, ())
    env.mpqueue_tables.update(getattr(other, "mpqueue_tables", {}))


def _init(app, env, docnames):
    if not hasattr(env, "mpqueue_tables"):
        env.mpqueue_tables = {}


def _every_table_rendered(app, env):
    shown = set().union(*env.mpqueue_tables.values()) if env.mpqueue_tables else set()
    missing = sorted(set(TABLES) - shown)
    if missing:
        raise ExtensionError(f"schema tables on no page (add a mpqueue-keys directive): {', '.join(missing)}")


def setup(app):
    app.connect("env-before-read-docs", _init)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("env-check-consistency", _every_table_rendered)
    for name, cls in (("mpqueue-keys", KeysDirective), ("mpqueue-metrics", MetricsDirective),
                      ("mpqueue-failures", FailuresDirective), ("mpqueue-exit-codes", ExitCodesDirective),
                      ("mpqueue-lua-keys", LuaKeysDirective)):
        app.add_directive(name, cls)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
