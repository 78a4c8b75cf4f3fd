"""One version everywhere it is written: the package, its metadata, the Debian
changelog (which names the .deb), the man pages and CHANGELOG.md."""
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
    for page in ("mpqueue.1", "mpqctl.1"):
        heading = (ROOT / "packaging/debian" / page).read_text().splitlines()[0]
        assert f'"mpqueue {version}"' in heading, (page, heading)
    assert re.search(rf"^## \[{re.escape(version)}\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
