"""The acceptance suite on the installed package: it builds the .deb (and the
previous release's), installs it with apt and drives the installed units under a
throwaway systemd. It changes /usr, /etc and /var of the machine and removes
what it added, so it runs only with MPQUEUE_DEB_TEST=1, as root, where the
systemd harness works (.ci/run's last phase)."""
import os

import pytest

from tests.debian import acceptance
from tests.systemd.harness import unavailable

DEB_TEST = os.environ.get("MPQUEUE_DEB_TEST") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "deb: builds, installs and purges the Debian package for real "
                                       "(root; set MPQUEUE_DEB_TEST=1)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("deb") is None:
            continue
        if not DEB_TEST:
            item.add_marker(pytest.mark.skip(reason="installs and purges a package on this machine: "
                                                    "set MPQUEUE_DEB_TEST=1"))
        elif unavailable() is not None:
            item.add_marker(pytest.mark.skip(reason=f"no throwaway systemd: {unavailable()}"))


@pytest.fixture(scope="session")
def packages(tmp_path_factory):
    """{"new": the working tree's .deb, "previous": the previous release's .deb}."""
    if acceptance.package_state() not in ("", "not-installed"):
        pytest.skip("mpqueue is already installed on this machine; this suite would remove it")
    out = tmp_path_factory.mktemp("debs")
    new = acceptance.build(acceptance.REPO, out / "new")
    try:
        source = acceptance.previous_release_source(out / "previous-src")
    except Exception as exc:             # a shallow clone without the release commit
        raise AssertionError(f"the previous release {acceptance.PREVIOUS_RELEASE[:12]} is not in this "
                             f"clone's history; fetch it (git fetch --unshallow): {exc}")
    previous = acceptance.build(source, out / "previous")
    return {"new": new, "previous": previous}
