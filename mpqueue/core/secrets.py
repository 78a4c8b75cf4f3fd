"""Where a secret file named in the YAML is (broker_password_file, web.token_file).

The README's setup names it `${CREDENTIALS_DIRECTORY}/redis-password`: systemd
sets that variable inside the unit (LoadCredential=) and nowhere else, so the
same file must also work for the tools an operator runs beside the unit
(`mpqueue check NAME`, `mpqctl -s NAME`, `mpqueue.connect(yaml)`). Outside the
unit, `${CREDENTIALS_DIRECTORY}` means, in this order: $MPQUEUE_CREDENTIALS_DIR
(the operator says where), else the directory where systemd keeps the running
unit's credentials, /run/credentials/UNIT/ (readable by root while it runs).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

VAR = "CREDENTIALS_DIRECTORY"
FALLBACK_ENV = "MPQUEUE_CREDENTIALS_DIR"
SYSTEMD_CREDENTIALS = Path("/run/credentials")


class SecretPathError(ValueError):
    """A secret path that names a variable nobody set (str(e): one line)."""


def expand(value: str, key: str, units: tuple[str, ...]) -> str:
    """`value` with ${VARS} expanded, ${CREDENTIALS_DIRECTORY} found as above for
    the systemd `units` the secret may belong to (e.g. mpqueue@orders.service)."""
    env = dict(os.environ)
    if not env.get(VAR):
        found = credentials_dir(units)
        if found is not None:
            env[VAR] = found
    where = _expandvars(value, env)
    if "$" in where:
        units_text = " or ".join(f"{SYSTEMD_CREDENTIALS}/{u}/" for u in units) or "the unit's"
        raise SecretPathError(
            f"{key}: {value!r} names an unset variable; under systemd LoadCredential= sets {VAR}; outside the "
            f"unit set {FALLBACK_ENV}=DIR (a directory holding the same files), or run as root while the unit "
            f"runs ({units_text} is then read)")
    return where


def credentials_dir(units: tuple[str, ...]) -> str | None:
    given = os.environ.get(FALLBACK_ENV)
    if given:
        return given
    for unit in units:
        candidate = SYSTEMD_CREDENTIALS / unit
        if os.path.isdir(candidate) and os.access(candidate, os.R_OK | os.X_OK):
            return str(candidate)
    return None


_VAR = re.compile(r"\$(\w+|\{([^}]*)\})")


def _expandvars(value: str, env: dict) -> str:
    """os.path.expandvars over `env`: $NAME and ${NAME} replaced, unknown ones left as they are."""
    def one(m):
        name = m.group(2) if m.group(2) is not None else m.group(1)
        return env.get(name, m.group(0))
    return _VAR.sub(one, value)
