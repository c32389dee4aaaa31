#!/bin/sh
# make install / make uninstall.  Installs the module with apxs, the
# Debian-style a2enmod files, dbmail_tap, its systemd unit and an example
# configuration (never overwriting an existing one).
# Usage: install.sh install|uninstall BUILD_DIR   (DESTDIR honoured)
set -eu
action=$1
b=${2:-build}
here=$(cd "$(dirname "$0")" && pwd)
APXS=${APXS:-$(command -v apxs || command -v apxs2 || echo apxs)}
D=${DESTDIR:-}
libexec=$("$APXS" -q LIBEXECDIR)
sysconf=$("$APXS" -q SYSCONFDIR)
mods="$sysconf/mods-available"
sbin=${SBINDIR:-/usr/local/sbin}
unitdir=${UNITDIR:-/etc/systemd/system}
confdir=${CONFDIR:-/etc/mailguard}

case "$action" in
install)
    if [ -z "$D" ]; then
        # apxs knows where modules go and how to install them.
        "$APXS" -i -S LIBEXECDIR="$libexec" -n mailguard "$b/mod_mailguard.so"
    else
        install -D -m 644 "$b/mod_mailguard.so" "$D$libexec/mod_mailguard.so"
    fi
    if [ -d "$D$mods" ] || [ -n "$D" ]; then
        install -D -m 644 "$here/packaging/mailguard.load" "$D$mods/mailguard.load"
        install -D -m 644 "$here/packaging/mailguard.conf" "$D$mods/mailguard.conf"
    fi
    install -D -m 755 "$b/dbmail_tap" "$D$sbin/dbmail_tap"
    install -D -m 644 "$here/packaging/dbmail_tap.service" "$D$unitdir/dbmail_tap.service"
    if [ ! -e "$D$confdir/dbmail_tap.conf" ]; then
        install -D -m 640 "$here/packaging/dbmail_tap.conf" "$D$confdir/dbmail_tap.conf"
    fi
    echo "installed; enable with: a2enmod mailguard && systemctl reload apache2"
    ;;
uninstall)
    rm -f "$D$libexec/mod_mailguard.so" "$D$mods/mailguard.load" "$D$mods/mailguard.conf" \
          "$D$sbin/dbmail_tap" "$D$unitdir/dbmail_tap.service"
    rm -f "$D$sysconf/mods-enabled/mailguard.load" "$D$sysconf/mods-enabled/mailguard.conf"
    echo "uninstalled; $confdir is kept (your configuration)"
    ;;
*)
    echo "usage: $0 install|uninstall BUILD_DIR" >&2
    exit 2
    ;;
esac
