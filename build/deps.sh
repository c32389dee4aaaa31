#!/bin/sh
# Installs the Debian packages that build, tests and demo need.
# Idempotent: does nothing when everything is present.  Not root and
# something missing: prints the exact apt-get line and fails, so a
# developer knows what to run instead of meeting a confusing build error.
# Optional packages (--drills: wrk) are installed as root; otherwise their
# absence is said, not fatal: the tests that need them skip, saying why.
set -eu

pkgs="apache2 apache2-dev libapr1-dev libaprutil1-dev libpcre2-dev
libhiredis-dev redis-server redis-tools redis-sentinel spiped check pkg-config python3-pytest
curl libapache2-mod-php nftables iproute2 gcc make valgrind binutils
roundcube roundcube-sqlite3 dovecot-imapd php8.2-fpm clang-format cppcheck"
case "${1:-}" in
--extra)
    # Benchmarks and fuzzing only: not needed by `make test`.
    pkgs="$pkgs wrk clang libclang-rt-14-dev fail2ban"
    ;;
--package)
    # `make deb` / `make package-test` only.  dh_apache2 (the virtual
    # dh-apache2) comes with apache2-dev, above; systemd brings
    # systemd-analyze, which checks the unit.
    pkgs="$pkgs debhelper dpkg-dev lintian systemd"
    ;;
--drills)
    # `make drills` only: the module's drills put wrk load on httpd.
    optional="wrk"
    ;;
esac

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=""
for p in $pkgs; do
    installed "$p" || missing="$missing $p"
done
missing_opt=""
for p in ${optional:-}; do
    installed "$p" || missing_opt="$missing_opt $p"
done
[ -z "$missing$missing_opt" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    if [ -n "$missing_opt" ]; then
        echo "deps.sh: not installed:$missing_opt (the tests that need it skip);" \
             "as root: apt-get install -y --no-install-recommends$missing_opt" >&2
    fi
    [ -z "$missing" ] && exit 0
    echo "deps.sh: missing packages:$missing" >&2
    echo "run as root: apt-get install -y --no-install-recommends$missing" >&2
    exit 1
fi
missing="$missing$missing_opt"

export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# policy-rc.d keeps the packages' own services (apache2, redis-server)
# from starting system-wide: tests start their own on private ports.
prc=/usr/sbin/policy-rc.d
if [ ! -e "$prc" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$prc"
    chmod 755 "$prc"
    trap 'rm -f "$prc"' EXIT
fi
apt-get install -y -q --no-install-recommends $missing >/dev/null
