#!/bin/sh
# make install / make uninstall.  Installs the module with apxs, the
# Debian-style a2enmod files, dbmail_tap, its systemd unit (ExecStart
# pointing at the dbmail_tap installed here) and the unit's firewall
# drop-in, the man pages when `make man` built them, an example
# configuration (never overwriting an existing one) and the webmail
# plugins: a copy of both under $DATADIR, the Roundcube plugin where
# Debian's Roundcube loads plugins from (its INSTALL_PATH is
# /var/lib/roundcube/, so /var/lib/roundcube/plugins/mailguard) when that
# directory exists, and the SquirrelMail plugin into
# $SQUIRRELMAIL_DIR/plugins/mailguard when SQUIRRELMAIL_DIR names a
# SquirrelMail tree.  Each still has to be enabled in the webmail's
# configuration (README, "Webmail plugins").
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
datadir=${DATADIR:-/usr/local/share/mod_mailguard}
tapdatadir=${TAPDATADIR:-/usr/local/share/dbmail-tap}
mandir=${MANDIR:-/usr/local/share/man}
rcplugins=${ROUNDCUBE_PLUGINS:-/var/lib/roundcube/plugins}
sqmdir=${SQUIRRELMAIL_DIR:-}
webmail=$(cd "$here/../mod_mailguard/webmail" && pwd)

# install_tree SRC DEST: a plain copy, files 644 and directories 755.
install_tree() {
    rm -rf "$2"
    mkdir -p "$2"
    (cd "$1" && find . -type f) | while read -r f; do
        install -D -m 644 "$1/$f" "$2/$f"
    done
}

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
    mkdir -p "$D$unitdir"
    sed -e "s|@SBINDIR@|$sbin|g" -e "s|@CONFDIR@|$confdir|g" \
        "$here/packaging/dbmail-tap.service" >"$D$unitdir/dbmail-tap.service"
    chmod 644 "$D$unitdir/dbmail-tap.service"
    install -D -m 644 "$here/packaging/dbmail-tap-firewall.conf" "$D$tapdatadir/firewall.conf"
    for m in "$b/man/dbmail_tap.8" "$b/man/mailguard.conf.5"; do
        [ -f "$m" ] || continue
        install -D -m 644 "$m" "$D$mandir/man${m##*.}/${m##*/}"
    done
    if [ ! -e "$D$confdir/dbmail_tap.conf" ]; then
        install -D -m 640 "$here/packaging/dbmail_tap.conf" "$D$confdir/dbmail_tap.conf"
    fi
    install_tree "$webmail/roundcube/mailguard" "$D$datadir/webmail/roundcube/mailguard"
    install_tree "$webmail/squirrelmail/mailguard" "$D$datadir/webmail/squirrelmail/mailguard"
    if [ -d "$D$rcplugins" ] || [ -n "$D" ]; then
        install_tree "$webmail/roundcube/mailguard" "$D$rcplugins/mailguard"
        echo "Roundcube plugin in $rcplugins/mailguard; enable it in"
        echo "  /etc/roundcube/config.inc.php: \$config['plugins'][] = 'mailguard';"
    fi
    if [ -n "$sqmdir" ]; then
        [ -d "$D$sqmdir/plugins" ] || { echo "install.sh: $sqmdir/plugins is not a directory" >&2; exit 1; }
        install_tree "$webmail/squirrelmail/mailguard" "$D$sqmdir/plugins/mailguard"
        echo "SquirrelMail plugin in $sqmdir/plugins/mailguard; enable it in"
        echo "  $sqmdir/config/config_local.php: \$plugins[] = 'mailguard';"
    fi
    echo "installed; enable with: a2enmod mailguard && systemctl reload apache2"
    echo "  and: systemctl daemon-reload && systemctl enable --now dbmail-tap"
    ;;
uninstall)
    # dbmail_tap.service: the unit's name before it was dbmail-tap.service.
    rm -f "$D$libexec/mod_mailguard.so" "$D$mods/mailguard.load" "$D$mods/mailguard.conf" \
          "$D$sbin/dbmail_tap" "$D$unitdir/dbmail-tap.service" "$D$unitdir/dbmail_tap.service" \
          "$D$tapdatadir/firewall.conf" "$D$mandir/man8/dbmail_tap.8" \
          "$D$mandir/man5/mailguard.conf.5"
    rmdir "$D$tapdatadir" 2>/dev/null || true
    rm -f "$D$sysconf/mods-enabled/mailguard.load" "$D$sysconf/mods-enabled/mailguard.conf"
    rm -rf "$D$datadir/webmail" "$D$rcplugins/mailguard"
    [ -z "$sqmdir" ] || rm -rf "$D$sqmdir/plugins/mailguard"
    rmdir "$D$datadir" 2>/dev/null || true
    echo "uninstalled; $confdir is kept (your configuration)"
    ;;
*)
    echo "usage: $0 install|uninstall BUILD_DIR" >&2
    exit 2
    ;;
esac
