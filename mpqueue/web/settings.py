"""What `mpqueue web` serves with: the listen address, the access token and the
read-only switch, from the YAML's `web:` section and the command line.

The rules are checked before anything listens, each failure one line
(SetupError): beyond loopback only with a token, the token only from a file
that other users can neither read nor write and that belongs to this user or
root, and never a token so short or so plain it could be guessed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..core import secrets
from ..core.address import is_loopback, join_host_port, split_host_port
from ..core.config import anchor  # relative paths mean relative to the YAML, as for the broker's

# Logins are throttled per address (throttle.py), but a proxy or many addresses
# multiply the tries: a token must be too long and too varied to guess. Counting
# distinct characters refuses `passwordpassword` (7) and `aaaa...`; `openssl rand
# -hex 32` (64 characters) has all 16 hex digits but in one case in 10^12.
MIN_TOKEN = 16
MIN_DISTINCT = 10
TOKEN_RULE = (f"at least {MIN_TOKEN} characters without spaces, at least {MIN_DISTINCT} of them different, "
              "not a shorter string repeated")


class SetupError(Exception):
    """One line saying why the dashboard can't start with these settings."""


class ServeError(Exception):
    """The dashboard could not serve (e.g. its port is taken): one line."""


@dataclass(frozen=True)
class WebSettings:
    host: str
    port: int
    token: str | None = None
    read_only: bool = False

    @property
    def address(self) -> str:
        return join_host_port(self.host, self.port)


def read_token(token_file: str, base: Path, service: str) -> str:
    """The token in `token_file` (${VARS} expanded as core/secrets.py says, relative
    to `base`), refused when other users can read or write it, when it belongs to
    another user (a systemd credential belongs to the service's user or root), or
    when it is too plain to be a secret."""
    try:
        where = secrets.expand(token_file, "web.token_file", (f"mpqueue-web@{service}.service",))
    except secrets.SecretPathError as exc:
        raise SetupError(str(exc)) from None
    path = Path(anchor(where, base))
    try:
        st = path.stat()
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SetupError(f"web.token_file: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    _check_file(path, st)
    if not token_is_strong(token):
        raise SetupError(f"web.token_file: {path} must hold one token of {TOKEN_RULE} "
                         "(e.g. from `openssl rand -hex 32`)")
    return token


def _check_file(path: Path, st: os.stat_result) -> None:
    mode = st.st_mode & 0o777
    if mode & 0o004:
        raise SetupError(f"web.token_file: {path} is readable by other users (mode {mode:04o}); "
                         "chmod o-r it, or use a systemd credential (LoadCredential=)")
    # Whoever can write the file chooses the token at the next start.
    if mode & 0o022:
        raise SetupError(f"web.token_file: {path} is writable by group or other users (mode {mode:04o}); "
                         "chmod go-w it, or use a systemd credential (LoadCredential=)")
    if st.st_uid not in (os.geteuid(), 0):
        raise SetupError(f"web.token_file: {path} belongs to uid {st.st_uid}, not to the user running the "
                         f"dashboard (uid {os.geteuid()}) or root; chown it, or use a systemd credential")


def token_is_strong(token: str) -> bool:
    """TOKEN_RULE. A string is a repeat of a shorter one exactly when it occurs
    inside itself doubled before its own length."""
    return (len(token) >= MIN_TOKEN and not any(c.isspace() for c in token)
            and len(set(token)) >= MIN_DISTINCT and (token + token).find(token, 1) == len(token))


def resolve(cfg, listen: str | None = None, read_only: bool = False) -> WebSettings:
    """The settings for service config `cfg`; `listen` and `read_only` come from
    the command line (listen overrides web.listen; read_only adds to web.read_only)."""
    web = cfg.web
    try:
        host, port = split_host_port(listen or web.listen)
    except ValueError as exc:
        raise SetupError(f"--listen: {exc}") from None
    # Relative to the file itself, as every other path in it (config.load_config): a
    # `current -> release` link's target directory
    base = Path(cfg.source).resolve().parent if cfg.source else Path.cwd()
    token = read_token(web.token_file, base, cfg.name) if web.token_file else None
    if token is None and not is_loopback(host):
        raise SetupError(f"refusing to listen on {join_host_port(host, port)} without authentication: beyond "
                         "loopback the dashboard needs web.token_file (a file holding the access token)")
    return WebSettings(host=host, port=port, token=token, read_only=bool(read_only or web.read_only))
