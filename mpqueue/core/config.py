"""The service's YAML file -> frozen, validated dataclasses (schema.py).

Reading is strict: duplicate keys are refused, relative paths mean relative to
the file, and a password is taken from `broker_password_file` or refused where
other users could read it. Every problem is one ConfigError line.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from urllib.parse import quote

import yaml

from . import secrets
from .names import NAME_CHARS, is_name
from .redis_url import split_url
from .schema import (LOG_FIELDS, QUEUE_FIELDS, TOP_KEYS, ConfigError, LogConfig,  # noqa: F401 - the public face
                     QueueConfig, ServiceConfig, _show, parse_config)

CONFIG_DIR_ENV = "MPQUEUE_CONFIG_DIR"
DEFAULT_CONFIG_DIR = "/etc/mpqueue"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: PyYAML silently keeps the last
    one, so a second `emails:` queue would replace the first without a word."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` may legitimately repeat keys it merges
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_show(key)}", key_node.start_mark)
        return super().construct_mapping(node, deep)


def _read_yaml(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path.name}: cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path.name}: cannot read the file: not UTF-8 text (at byte {exc.start})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path.name}: invalid YAML: {_yaml_problem(exc)}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return where + " ".join(problem.split())


def anchor(entry: str, base: Path) -> str:
    """Relative paths in the file mean relative to the file, not to wherever
    the service was started from (systemd starts it in /)."""
    return str(base / entry) if not os.path.isabs(entry) else entry


def load_config(path) -> ServiceConfig:
    """Read and validate a YAML file; raises ConfigError (one line) on any problem."""
    path = Path(path)
    cfg = parse_config(_read_yaml(path), path.name, path.stem)
    base = path.resolve().parent
    log = cfg.log
    if log.file:
        log = dataclasses.replace(log, file=anchor(log.file, base))
    broker = _anchor_sqlite(_with_password(cfg, path, base), base, cfg.name)
    # `source` is the path as named, links and all: a reload re-reads it, so a deploy
    # that flips a `current -> release-N` link is seen; relative paths inside the
    # file are anchored at the file it names now (base).
    return dataclasses.replace(cfg, path=tuple(anchor(p, base) for p in cfg.path), log=log, broker=broker,
                               source=str(path.absolute()))


def _with_password(cfg, path: Path, base: Path) -> str:
    """The broker URL with the password from broker_password_file, if any. A password
    written in the YAML itself is refused when other users can read the file."""
    parts = split_url(cfg.broker)
    in_url = parts.password is not None or "password=" in parts.query
    if in_url and path.stat().st_mode & 0o004:
        raise ConfigError(f"{path.name}: broker: the URL holds a password but the file is readable by other "
                          f"users (mode {path.stat().st_mode & 0o777:04o}); chmod o-r it, or use "
                          "broker_password_file with a systemd credential")
    if not cfg.broker_password_file:
        return cfg.broker
    if in_url:
        raise ConfigError(f"{path.name}: broker_password_file: the broker URL has a password already; give it once")
    try:
        where = secrets.expand(cfg.broker_password_file, "broker_password_file", (f"mpqueue@{cfg.name}.service",))
    except secrets.SecretPathError as exc:
        raise ConfigError(f"{path.name}: {exc}") from None
    try:
        password = Path(anchor(where, base)).read_text().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{path.name}: broker_password_file: cannot read {where}: {exc.strerror}") from None
    user = quote(parts.username or "", safe="")
    return cfg.broker.replace(f"//{parts.authority}", f"//{user}:{quote(password, safe='')}@{parts.hosts}", 1)


def _anchor_sqlite(url: str, base: Path, name: str) -> str:
    """In an sqlite: URL, `{name}` is the service's name (so one example file serves
    every instance: sqlite:///var/lib/mpqueue/{name}/queue.db), and a relative path
    is relative to the YAML file, so the service, its workers and mpqctl all open
    the same database wherever they were started."""
    parts = split_url(url)
    if parts.scheme != "sqlite":
        return url
    path = ((parts.authority or "") + parts.path).replace("{name}", name)
    if not path.startswith("/"):
        path = str(base / path)
    return f"sqlite://{path}" + (f"?{parts.query}" if parts.query else "")


def config_dir() -> Path:
    return Path(os.environ.get(CONFIG_DIR_ENV) or DEFAULT_CONFIG_DIR)


def load_service(name: str) -> ServiceConfig:
    """The named service's configuration, $MPQUEUE_CONFIG_DIR/NAME.yaml. A `name:` in
    it must be NAME: systemd knows the service as mpqueue@NAME, and its lock (which
    `mpqueue reload NAME` looks for), its runtime and state directories and `{name}`
    in an SQLite URL all follow one name."""
    path = config_path_for(name)
    cfg = load_config(path)
    if cfg.name != name:
        raise ConfigError(f"{path.name}: name: {cfg.name!r} is not the service's name {name!r} (its file's "
                          f"name, the instance of mpqueue@{name}); remove `name:` or set it to {name!r}")
    return cfg


def config_path_for(name: str) -> Path:
    """$MPQUEUE_CONFIG_DIR/NAME.yaml; the name never reaches the file system
    unchecked, so `mpqueue run ../x` cannot read outside the directory."""
    if not is_name(name):
        raise ConfigError(f"service name: expected a name of {NAME_CHARS}, got {_show(name)}")
    return config_dir() / f"{name}.yaml"
