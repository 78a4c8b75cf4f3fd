#!/usr/bin/env bash
# Build the mpqueue .deb for Debian 12 in one command, as root (or with sudo-less
# apt rights): packaging/debian/build.sh [OUTDIR]   (default OUTDIR: ./dist/deb)
#
# Debian's tools want debian/ at the source root, and this repository keeps it in
# packaging/debian. So: copy the working tree (tracked and untracked-but-not-ignored
# files, i.e. what is there now, not only what is committed) to a temporary
# directory, put packaging/debian there as debian/, install the Build-Depends of
# debian/control with apt-get build-dep, run dpkg-buildpackage -us -uc -b, run
# lintian on the result, and move the .deb, .changes and .buildinfo to OUTDIR.
# Set MPQUEUE_NO_BUILD_DEPS=1 to skip installing build dependencies.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(mkdir -p "${1:-$ROOT/dist/deb}" && cd "${1:-$ROOT/dist/deb}" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mpqueue-deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SRC=$WORK/mpqueue

mkdir -p "$SRC"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Files deleted in the working tree but still tracked are skipped.
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
        | tar --null -T - -cf -) | tar -xf - -C "$SRC"
else
    (cd "$ROOT" && tar --exclude=.git --exclude='.venv*' --exclude=build --exclude=dist \
        --exclude='*.egg-info' --exclude=__pycache__ -cf - .) | tar -xf - -C "$SRC"
fi
rm -rf "$SRC/debian"
cp -a "$SRC/packaging/debian" "$SRC/debian"
rm -f "$SRC/debian/build.sh"

export DEBIAN_FRONTEND=noninteractive
if [ "${MPQUEUE_NO_BUILD_DEPS:-0}" != 1 ]; then
    # A fresh machine has no package lists yet: update and try again.
    apt_build_dep() { apt-get build-dep -y -q --no-install-recommends "$SRC"; }
    apt_build_dep >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt_build_dep >/dev/null; }
    # lintian checks the result (it is not a build dependency).
    command -v lintian >/dev/null || apt-get install -y -q --no-install-recommends lintian >/dev/null
fi

# The version is debian/changelog's newest entry (dpkg-dev, which dpkg-buildpackage
# needs, is installed by now): the files are mpqueue_VERSION_all.deb and friends.
VERSION=$(dpkg-parsechangelog -l "$SRC/debian/changelog" -S Version)

# Debian's own tools and interpreter, whatever pyenv or a virtualenv put first on PATH.
(cd "$SRC" && env -u PYTHONPATH -u PYTHONHOME -u VIRTUAL_ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    dpkg-buildpackage -us -uc -b)

for f in "$WORK"/mpqueue_"$VERSION"_*; do
    mv -f "$f" "$OUT/"
done
echo "== lintian"
PATH=/usr/sbin:/usr/bin:/sbin:/bin lintian --fail-on error,warning --info "$OUT"/mpqueue_"$VERSION"_*.changes
echo "built: $(ls "$OUT"/mpqueue_"$VERSION"_all.deb)"
