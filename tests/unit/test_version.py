"""One version everywhere it is written: the package, its metadata, the Debian
changelog (which names the .deb) and CHANGELOG.md. The man pages are built from docs/
with mpqueue.__version__ (docs/conf.py): test_docs_reference.py checks the built ones."""
import re
import tomllib
from pathlib import Path

import mpqueue

ROOT = Path(__file__).resolve().parents[2]


def test_the_version_is_the_same_in_every_place_it_lives():
    version = mpqueue.__version__
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"] == version
    newest = (ROOT / "packaging/debian/changelog").read_text().splitlines()[0]
    assert re.fullmatch(rf"mpqueue \({re.escape(version)}-\d+\) \S+; urgency=\w+", newest), newest
    assert re.search(rf"^## \[{re.escape(version)}\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
