#!/bin/sh
# make deb: builds libapache2-mod-mailguard and dbmail-tap into build/deb/.
#
# The repository keeps no debian/ at its top level: the packaging files
# live in build/debian/.  This copies the sources the build needs and
# build/debian/ (as debian/) into build/deb-tree/, a fresh tree each time,
# runs dpkg-buildpackage there (binary packages, unsigned) and moves the
# .deb files to build/deb/.  Then lintian: any error fails the build;
# warnings are printed.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build/deb
work=$root/build/deb-tree
src=$work/mod-mailguard

cd "$root"
version=$(sed -n 's/^#define TAP_VERSION "\(.*\)"$/\1/p' dbmail_tap/tap_cmd.h)
debversion=$(dpkg-parsechangelog -l build/debian/changelog -S Version)
if [ "$version" != "$debversion" ]; then
    echo "deb.sh: dbmail_tap/tap_cmd.h says $version but build/debian/changelog" >&2
    echo "        says $debversion: add a changelog entry (dch -v $version)" >&2
    exit 1
fi

rm -rf "$work" "$out"
mkdir -p "$src/build" "$out"
cp -a Makefile apxs.mk README.md mod_mailguard dbmail_tap "$src/"
cp -a build/embed_lua.sh build/packaging build/docs "$src/build/"
cp -a build/debian "$src/debian"
find "$src" -name __pycache__ -prune -exec rm -rf {} +

(cd "$src" && dpkg-buildpackage -b --no-sign) >"$work/build.log" 2>&1 || {
    tail -n 40 "$work/build.log" >&2
    echo "deb.sh: dpkg-buildpackage failed; the whole log is $work/build.log" >&2
    exit 1
}
mv "$work"/*.deb "$out/"
ls -l "$out"

if command -v lintian >/dev/null 2>&1; then
    # --fail-on error: warnings and notes are printed, not fatal (a new
    # one deserves a look: fix it, or override it with a reason in
    # build/debian/*.lintian-overrides).
    lintian --fail-on error --display-info "$out"/*.deb
    echo "lintian: no errors"
else
    echo "deb.sh: lintian is not installed (build/deps.sh --package installs it)" >&2
    exit 1
fi
