"""The peers' virtualenvs: made once from their pinned requirements file, reused
while that file is unchanged. Never the project's own environment."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# virtualenv directory -> requirements file (arq needs redis<6, celery[redis] >=6.4)
PEERS = HERE / ".venv-peers", HERE / "requirements-peers.txt"
PEERS_ARQ = HERE / ".venv-peers-arq", HERE / "requirements-peers-arq.txt"


def ensure_venv(spec: tuple[Path, Path]) -> Path:
    """The venv's bin/ directory; created (python3 -m venv, pip install -r) when
    missing or when its requirements file changed since it was made."""
    venv, requirements = spec
    stamp, wanted = venv / "requirements.stamp", requirements.read_text()
    if not (stamp.exists() and stamp.read_text() == wanted):
        print(f"installing {requirements.name} into {venv.relative_to(HERE.parent)} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "-r",
                        str(requirements)], check=True)
        stamp.write_text(wanted)
    return venv / "bin"
