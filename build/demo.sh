#!/bin/sh
# `make demo`: see mod_mailguard stop a password-guessing client.
#
# Starts, in a temporary directory and on free loopback ports only, a
# redis-server and an Apache (prefork + mod_php) with mod_mailguard in front
# of a Roundcube stand-in login page; plays a short brute force with curl;
# prints the ban set as an operator would query it; lifts the ban again;
# and stops everything it started (also on Ctrl-C or an error).
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
cleanup() {
    set +e
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
EOF
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
echo "5. An operator lifts the ban:"
echo "     redis-cli -p $rport ZREM mailguard:bans 127.0.0.66"
echo "     redis-cli -p $rport PUBLISH mailguard:events 'unban 127.0.0.66'"
redis-cli -p "$rport" ZREM mailguard:bans 127.0.0.66 >/dev/null
redis-cli -p "$rport" PUBLISH mailguard:events "unban 127.0.0.66" >/dev/null
sleep 0.5
login 127.0.0.66 admin right "after the unban"
echo
echo "Done: stopping Apache and Redis and removing $tmp."
