"""Helpers for mod_mailguard tests: the Redis side of the contract.

The ban set is `<prefix>bans` (member = canonical address, score = expiry
in Unix seconds or +inf); changes are announced on `<prefix>events` as
`ban <addr> <expiry> <jail>` / `unban <addr>` and logged in the stream
`<prefix>log`, which the module's sync job and dbmail_tap follow.  Another
host changes the set with the project's own scripts (as every program
built on the store does); a bare ZADD/ZREM is a hand edit.
"""
import os
import re
import socket
import threading
import time

LUA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                       "mod_mailguard", "core", "lua")

PREFIX = "mailguard:"
# The trusted proxy of the test servers (RemoteIPInternalProxy): requests
# from it carry the client address in X-Forwarded-For.
PROXY = "127.0.0.1"
# A vhost guarded with the Roundcube rule and a small MaxRetry: the shape
# the sync, outage and valgrind tests share.
GUARDED_VHOST = """
    MailGuardEngine On
    MailGuardWatch roundcube
    MailGuardMaxRetry 2
    MailGuardBanTime 1h
"""


def status(srv, xff):
    """Status of a static GET from client xff through the trusted proxy."""
    return srv.get("/static.txt", src=PROXY, xff=xff).status


def now():
    return time.time()


def bans(redis, prefix=PREFIX):
    """Every member of the ban set with its score (float; inf for +inf)."""
    flat = redis.cmd("ZRANGE", prefix + "bans", 0, -1, "WITHSCORES")
    return {flat[i]: float(flat[i + 1]) for i in range(0, len(flat), 2)}


def live_bans(redis, prefix=PREFIX):
    """What an operator sees: ZRANGEBYSCORE bans <now> +inf."""
    flat = redis.cmd("ZRANGEBYSCORE", prefix + "bans", int(now()), "+inf", "WITHSCORES")
    return {flat[i]: float(flat[i + 1]) for i in range(0, len(flat), 2)}


def script(name):
    """A script of the store as Redis runs it (includes expanded), the way
    build/embed_lua.sh builds it into the programs."""
    out = []
    with open(os.path.join(LUA_DIR, name + ".lua")) as f:
        for line in f:
            m = re.match(r"-- #include (\S+)$", line.rstrip("\n"))
            if m:
                with open(os.path.join(LUA_DIR, "include", m.group(1))) as inc:
                    out.append(inc.read())
            else:
                out.append(line)
    return "".join(out)


def ban_from_elsewhere(redis, addr, expiry, jail="imap", publish=True, prefix=PREFIX):
    """A ban written by another host through the store's ban script (it is
    published and logged).  publish=False: a bare ZADD, a hand edit."""
    score = "+inf" if expiry == float("inf") else str(int(expiry))
    if publish:
        redis.cmd("EVAL", script("ban"), 0, prefix, jail, addr, score.lstrip("+"))
    else:
        redis.cmd("ZADD", prefix + "bans", score, addr)


def unban_from_elsewhere(redis, addr, publish=True, prefix=PREFIX):
    """An unban through the store's script; publish=False: a bare ZREM."""
    if publish:
        redis.cmd("EVAL", script("unban"), 0, prefix, addr)
    else:
        redis.cmd("ZREM", prefix + "bans", addr)


def wait_for(predicate, within, step=0.05):
    """Seconds until predicate() was true, or None after `within` seconds."""
    t0 = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - t0
        if time.monotonic() - t0 > within:
            return None
        time.sleep(step)


class Events:
    """A SUBSCRIBE connection on <prefix>events, as another host would hold."""

    def __init__(self, redis, prefix=PREFIX):
        self.client = redis.client()
        self.client("SUBSCRIBE", prefix + "events")

    def next(self, timeout=2.0):
        """The next message text, or None after timeout seconds."""
        self.client.sock.settimeout(timeout)
        try:
            msg = self.client.read_reply()
        except socket.timeout:
            return None
        return msg[2] if isinstance(msg, list) and msg[0] == "message" else None

    def collect(self, timeout=1.0):
        out = []
        while True:
            m = self.next(timeout)
            if m is None:
                return out
            out.append(m)

    def close(self):
        self.client.close()


def _answers_within(redis, seconds):
    try:
        with socket.create_connection((redis.host, redis.port), timeout=seconds) as c:
            c.sendall(b"PING\r\n")
            return bool(c.recv(64))
    except socket.timeout:
        return False


def busy_redis(redis, seconds):
    """Keep redis busy for `seconds` with a script that blocks every other
    client (a neighbour's long command); returns the started thread once
    Redis has stopped answering."""
    t = threading.Thread(target=redis.cmd, args=(
        "EVAL", "local t = redis.call('TIME') local s = t[1] * 1000000 + t[2] "
        "repeat local u = redis.call('TIME') until u[1] * 1000000 + u[2] - s > %d "
        "return 1" % int(seconds * 1000000), 0))
    t.start()
    deadline = time.monotonic() + seconds / 2
    while time.monotonic() < deadline and _answers_within(redis, 0.05):
        time.sleep(0.002)
    return t
