#!/bin/sh
# `make demo`: see mod_mailguard stop a password-guessing client.
#
# Starts, in a temporary directory and on free loopback ports only, a
# redis-server and an Apache (prefork + mod_php) with mod_mailguard in front
# of a Roundcube stand-in login page; plays a short brute force with curl;
# prints the ban set as an operator would query it; lifts the ban again.
# Then, with Debian's real Roundcube, the project's mailguard plugin and a
# real Dovecot, it shows an IMAP outage: logins answer 503 and nobody is
# banned.  It stops everything it started (also on Ctrl-C or an error).
#
# Usage: sh build/demo.sh BUILD_DIR
set -eu

b=$(cd "${1:-build}" && pwd)
top=$(cd "$(dirname "$0")/.." && pwd)
so="$b/mod_mailguard.so"
modules=/usr/lib/apache2/modules
maxretry=5

die() { echo "demo: $*" >&2; exit 1; }
[ -f "$so" ] || die "$so is not built (run: make B=$1 all)"
for t in apache2 redis-server redis-cli curl python3; do
    command -v "$t" >/dev/null 2>&1 || [ -x "/usr/sbin/$t" ] || die "$t is missing (run: make deps)"
done
php=$(ls "$modules"/libphp*.so 2>/dev/null | tail -n 1)
[ -n "$php" ] || die "no PHP module in $modules (run: make deps)"
apache2=$(command -v apache2 || echo /usr/sbin/apache2)

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

tmp=$(mktemp -d /tmp/mailguard-demo.XXXXXX)
chmod 755 "$tmp"
httpd_pid=""
redis_pid=""
dovecot_pid=""
cleanup() {
    set +e
    if [ -n "$dovecot_pid" ]; then
        kill -TERM "$dovecot_pid" 2>/dev/null && wait "$dovecot_pid" 2>/dev/null
    fi
    if [ -n "$httpd_pid" ]; then
        # The PidFile names the parent; prefork's shutdown signals the
        # parent's whole process group, which setsid made its own.
        pid=$(cat "$tmp/run/httpd.pid" 2>/dev/null || echo "$httpd_pid")
        kill -TERM "$pid" 2>/dev/null
        wait "$httpd_pid" 2>/dev/null
    fi
    if [ -n "$redis_pid" ]; then
        kill -TERM "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rport=$(free_port)
hport=$(free_port)

# ---- Redis: the shared ban store ----
mkdir -p "$tmp/redis"
redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no \
    --dir "$tmp/redis" --daemonize no --protected-mode no \
    --logfile "$tmp/redis/redis.log" &
redis_pid=$!
i=0
until [ "$(redis-cli -p "$rport" ping 2>/dev/null)" = PONG ]; do
    i=$((i + 1)); [ $i -lt 100 ] || die "redis-server did not start (see $tmp/redis/redis.log)"
    sleep 0.05
done

# ---- the real Roundcube with the mailguard plugin, and Dovecot ----
# Only as root (Dovecot runs the mail user as www-data) and with Debian's
# roundcube and dovecot-imapd installed (make deps installs them).
rc=""
if [ "$(id -u)" -eq 0 ] && [ -f /usr/share/roundcube/index.php ] \
    && command -v dovecot >/dev/null 2>&1; then
    rc="$tmp/roundcube"
    iport=$(free_port)
    mkdir -p "$tmp/dovecot/run" "$tmp/dovecot/state"
    for u in alice bob carol dave; do
        mkdir -p "$tmp/dovecot/home/$u"
        chown www-data:www-data "$tmp/dovecot/home/$u"
        echo "$u:{PLAIN}right:$(id -u www-data):$(id -g www-data)::$tmp/dovecot/home/$u"
    done >"$tmp/dovecot/users"
    cat >"$tmp/dovecot/dovecot.conf" <<EOF
base_dir = $tmp/dovecot/run
state_dir = $tmp/dovecot/state
log_path = $tmp/dovecot/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_failure_delay = 0
first_valid_uid = 1
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $tmp/dovecot/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $tmp/dovecot/users
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $iport
  }
  inet_listener imaps {
    port = 0
  }
}
EOF
    dovecot -F -c "$tmp/dovecot/dovecot.conf" 2>>"$tmp/dovecot/stderr.log" &
    dovecot_pid=$!
    i=0
    until python3 -c "import socket; socket.create_connection(('127.0.0.1', $iport), 1)" \
        2>/dev/null; do
        i=$((i + 1)); [ $i -lt 200 ] || die "dovecot did not start (see $tmp/dovecot/dovecot.log)"
        sleep 0.05
    done
    mkdir -p "$rc/config" "$rc/plugins" "$rc/temp" "$rc/logs" "$rc/db"
    printf "<?php\ndefine('INSTALL_PATH', __DIR__ . '/');\nrequire '/usr/share/roundcube/index.php';\n" \
        >"$rc/index.php"
    ln -s /usr/share/roundcube/program "$rc/program"
    ln -s /usr/share/roundcube/skins "$rc/skins"
    for p in /usr/share/roundcube/plugins/*; do ln -s "$p" "$rc/plugins/"; done
    cp -R "$top/mod_mailguard/webmail/roundcube/mailguard" "$rc/plugins/"
    ln -s /etc/roundcube/defaults.inc.php "$rc/config/defaults.inc.php"
    php -r '$db = new PDO("sqlite:" . $argv[1]); $db->exec(file_get_contents($argv[2]));' \
        "$rc/db/roundcube.db" /usr/share/roundcube/SQL/sqlite.initial.sql
    cat >"$rc/config/config.inc.php" <<EOF
<?php
\$config = [];
\$config['db_dsnw'] = 'sqlite:///$rc/db/roundcube.db?mode=0646';
\$config['imap_host'] = '127.0.0.1:$iport';
\$config['smtp_host'] = '';
\$config['des_key'] = 'mailguard-demo-des-key!!';
\$config['plugins'] = ['mailguard'];
\$config['log_dir'] = '$rc/logs';
\$config['temp_dir'] = '$rc/temp';
EOF
    chown -R www-data:www-data "$rc/temp" "$rc/logs" "$rc/db"
    chmod -R a+rX "$rc"
fi

# ---- Apache with mod_mailguard in front of the Roundcube stand-in ----
mkdir -p "$tmp/htdocs" "$tmp/logs" "$tmp/run"
cp "$top/tests/integration/www/index.php" "$top/tests/integration/www/_runlog.php" "$tmp/htdocs/"
chmod -R a+rX "$tmp/htdocs"
user=""
[ "$(id -u)" -ne 0 ] || user="User www-data
Group www-data"
cat >"$tmp/httpd.conf" <<EOF
ServerRoot "$tmp"
DefaultRuntimeDir "$tmp/run"
PidFile "$tmp/run/httpd.pid"
ServerName 127.0.0.1
Listen 127.0.0.1:$hport
$user
LoadModule mpm_prefork_module $modules/mod_mpm_prefork.so
LoadModule authz_core_module $modules/mod_authz_core.so
LoadModule authz_host_module $modules/mod_authz_host.so
LoadModule mime_module $modules/mod_mime.so
LoadModule dir_module $modules/mod_dir.so
LoadModule remoteip_module $modules/mod_remoteip.so
LoadModule php_module $php
LoadModule mailguard_module $so
StartServers 2
ErrorLog "$tmp/logs/error.log"
LogLevel notice
TypesConfig /etc/mime.types
DocumentRoot "$tmp/htdocs"
DirectoryIndex index.php
<Directory "$tmp/htdocs">
    Require all granted
</Directory>
<FilesMatch "\.php\$">
    SetHandler application/x-httpd-php
</FilesMatch>

MailGuardRedis redis://127.0.0.1:$rport
MailGuardSyncInterval 1s
MailGuardEngine On
MailGuardWatch roundcube
MailGuardMaxRetry $maxretry
MailGuardFindTime 10m
MailGuardBanTime 10m
<Location "/mailguard-status">
    SetHandler mailguard-status
    Require ip 127.0.0.1
</Location>
EOF
if [ -n "$rc" ]; then
    cat >>"$tmp/httpd.conf" <<EOF
LoadModule alias_module $modules/mod_alias.so
Alias /roundcube "$rc"
<Directory "$rc">
    Options FollowSymLinks
    Require all granted
</Directory>
EOF
fi
"$apache2" -t -f "$tmp/httpd.conf" >/dev/null 2>"$tmp/configtest.log" ||
    { cat "$tmp/configtest.log" >&2; die "apache2 -t failed"; }
# Its own session: prefork's shutdown signals its whole process group,
# which must not include this script or the shell that runs make.
setsid "$apache2" -f "$tmp/httpd.conf" -DFOREGROUND 2>"$tmp/logs/stderr.log" &
httpd_pid=$!
url="http://127.0.0.1:$hport"
i=0
until [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/" 2>/dev/null)" = 200 ]; do
    i=$((i + 1)); [ $i -lt 200 ] || { cat "$tmp/logs/error.log" >&2; die "apache2 did not start"; }
    sleep 0.05
done

reason() {
    case "$1" in
        200) echo "OK" ;;
        302|303) echo "redirect to the mailbox (login accepted)" ;;
        401) echo "Unauthorized (Roundcube: wrong password)" ;;
        403) echo "Forbidden (mod_mailguard: this address is banned; PHP did not run)" ;;
        *) echo "" ;;
    esac
}

# One login POST as Roundcube's form sends it; prints the status line.
login() {
    src=$1 user=$2 pass=$3 label=$4
    code=$(curl -s -o /dev/null -w '%{http_code}' --interface "$src" \
        --data-raw "_token=x&_task=login&_action=login&_timezone=UTC&_url=&_user=$user&_pass=$pass" \
        "$url/?_task=login" || true)
    printf '  %-22s from %-10s user=%-6s password=%-9s -> HTTP %s %s\n' \
        "$label" "$src" "$user" "$pass" "$code" "$(reason "$code")"
}

echo
echo "mod_mailguard demo"
echo "  Apache  $url  (Roundcube stand-in login page, prefork + mod_php)"
echo "  Redis   127.0.0.1:$rport"
echo "  Policy  MailGuardWatch roundcube, MailGuardMaxRetry $maxretry, FindTime 10m, BanTime 10m"
echo
echo "1. A client at 127.0.0.66 guesses passwords (POST /?_task=login):"
n=1
while [ $n -le $((maxretry + 2)) ]; do
    login 127.0.0.66 admin "guess$n" "attempt $n" 
    # The ban is made just after the failed response has been sent.
    [ $n -ne $maxretry ] || sleep 0.3
    n=$((n + 1))
done
echo "   The first $maxretry wrong passwords were answered by Roundcube (401); the"
echo "   ${maxretry}th made the ban, and from then on Apache answers 403 itself."
echo
echo "2. Meanwhile a real user at 127.0.0.2 logs in normally:"
login 127.0.0.2 alice right "login"
echo
now=$(date +%s)
echo "3. Who is banned?  redis-cli -p $rport ZRANGEBYSCORE mailguard:bans $now +inf WITHSCORES"
redis-cli -p "$rport" ZRANGEBYSCORE mailguard:bans "$now" +inf WITHSCORES | sed 's/^/     /'
exp=$(redis-cli -p "$rport" ZSCORE mailguard:bans 127.0.0.66)
[ -z "$exp" ] || echo "   (member = client address, score = ban expiry: $(date -u -d "@${exp%.*}" '+%Y-%m-%d %H:%M:%S UTC'))"
echo
echo "4. What Apache logged about it (one line per ban, none per denied request):"
grep -i '127.0.0.66' "$tmp/logs/error.log" | sed 's/^/     /' || echo "     (nothing)"
echo
echo "5. An operator lifts the ban (through the shared scripts, so every server"
echo "   and firewall of the site applies it within milliseconds):"
printf '[DEFAULT]\nredis = redis://127.0.0.1:%s\n' "$rport" >"$tmp/dbmail_tap.conf"
echo "     dbmail_tap unban 127.0.0.66 -c $tmp/dbmail_tap.conf"
"$b/dbmail_tap" unban 127.0.0.66 -c "$tmp/dbmail_tap.conf" | sed 's/^/     /'
sleep 0.2
login 127.0.0.66 admin right "after the unban"
echo
if [ -z "$rc" ]; then
    echo "6. (The IMAP outage with the real Roundcube needs root and Debian's"
    echo "    roundcube and dovecot-imapd: run make deps as root.)"
else
    failures() {
        curl -s "$url/mailguard-status" | sed -n 's/^FailuresSeen: //p'
    }
    # A login as a browser makes it: the form (session cookie, token), then the POST.
    rc_login() {
        src=$1 user=$2 pass=$3 label=$4
        jar="$tmp/jar.$src"
        token=$(curl -s -c "$jar" -b "$jar" --interface "$src" "$url/roundcube/?_task=login" |
            sed -n 's/.*name="_token" value="\([^"]*\)".*/\1/p' | head -n 1)
        out=$(curl -s -o /dev/null -D - -c "$jar" -b "$jar" --interface "$src" \
            --data-urlencode "_token=$token" --data "_task=login&_action=login&_timezone=UTC&_url=" \
            --data-urlencode "_user=$user" --data-urlencode "_pass=$pass" \
            "$url/roundcube/?_task=login" | tr -d '\r')
        code=$(printf '%s\n' "$out" | sed -n '1s/^HTTP[^ ]* \([0-9]*\).*/\1/p')
        after=$(printf '%s\n' "$out" | sed -n 's/^[Rr]etry-[Aa]fter: *\([0-9]*\).*/\1/p')
        case "$code" in
            401) why="Unauthorized (the IMAP server said no: counted)" ;;
            503) why="Service Unavailable, Retry-After $after (IMAP down: not counted)" ;;
            302) why="redirect to the mailbox (login accepted)" ;;
            429) why="Too Many Requests (Roundcube's own lock: not counted)" ;;
            *) why="" ;;
        esac
        printf '  %-8s from %-10s user=%s password=%-5s -> HTTP %s %s\n' \
            "$label" "$src" "$user" "$pass" "$code" "$why"
    }
    echo "6. The real Roundcube (Debian's package) with the mailguard plugin, at"
    echo "   $url/roundcube/, in front of a real Dovecot:"
    before=$(failures)
    rc_login 127.0.0.70 alice right "login"
    rc_login 127.0.0.71 alice typo "a typo"
    sleep 0.3
    echo "   FailuresSeen went from $before to $(failures): the typo counted."
    echo
    echo "7. Dovecot stops.  Three users keep trying, with their right password:"
    kill -TERM "$dovecot_pid" 2>/dev/null && wait "$dovecot_pid" 2>/dev/null
    dovecot_pid=""
    before=$(failures)
    for who in 72:bob 73:carol 74:dave; do
        for n in 1 2 3 4 5 6; do
            rc_login "127.0.0.${who%%:*}" "${who#*:}" right "try $n"
        done
    done
    sleep 0.3
    echo "   FailuresSeen is still $(failures) (was $before).  Who is banned now?"
    banned=$(redis-cli -p "$rport" ZRANGEBYSCORE mailguard:bans "$(date +%s)" +inf)
    echo "     ${banned:-(nobody)}"
    echo "   18 logins during the outage with MaxRetry $maxretry, and no ban.  Without the"
    echo "   plugin Roundcube answers each of them 401, and all three users are banned."
fi
echo
echo "Done: stopping Apache, Redis and Dovecot and removing $tmp."

