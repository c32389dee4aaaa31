"""dbmail_tap under test: generated configs, real log files, the real binary.

A TapDaemon writes a dbmail_tap.conf for the redis-server it is given,
starts `dbmail_tap run` in the foreground with stderr captured to a file,
and stops it by PID.  Log lines are written in DBMail's exact formats.
"""
import os
import re
import signal
import subprocess
import time

IMAP_FAIL = ("Nov 26 10:00:01 mail dbmail-imapd[1234]: [0x55d0c0ffee00] Notice:[imap] "
             "dbmail_imap_session_handle_auth(+1448): [0x55d0c0ffee10] login rejected: "
             "user [{user}] from [{addr}:{port}]\n")
POP3_FAIL = ("Nov 26 10:00:02 mail dbmail-pop3d[1235]: [0x55d0c0ffee20] Error:[pop3] "
             "pop3(+352): user [{user}] coming from [{addr}] tried to login with wrong password\n")
NOISE = ("Nov 26 10:00:03 mail dbmail-imapd[1234]: [0x55d0c0ffee00] Info:[imap] "
         "imap4_tokenizer(+120): [0x55d0c0ffee10] command [CAPABILITY] seq {n}\n")


def imap_fail(addr, user="bob", port=51234):
    return IMAP_FAIL.format(addr=addr, user=user, port=port)


def pop3_fail(addr, user="bob"):
    return POP3_FAIL.format(addr=addr, user=user)


def noise(n=0):
    return NOISE.format(n=n)


def wait_for(fn, timeout=5.0, interval=0.01, what="condition"):
    """Poll fn until it returns a truthy value; that value, or AssertionError."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %.1fs waiting for %s (last: %r)"
                         % (timeout, what, last))


def window_count(redis, key):
    """Entries of a failure window.  Its encoding is the store's internal
    business (a sorted set, or a string of fixed-width 15-digit times, or
    comma-separated times, as the scripts evolve): count any of them."""
    kind = redis.cmd("TYPE", key)
    if kind == "none":
        return 0
    if kind == "zset":
        return redis.cmd("ZCARD", key)
    v = redis.cmd("GET", key) or ""
    if "," in v:
        return v.count(",") + 1
    return len(v) // 15


def append(path, text):
    with open(path, "a") as f:
        f.write(text)
        f.flush()


class TapDaemon:
    def __init__(self, build_dir, tmpdir, redis, jails=None, default=None,
                 banaction="none", name="tap"):
        self.binary = os.path.join(build_dir, "dbmail_tap")
        self.dir = os.path.join(str(tmpdir), name)
        os.makedirs(self.dir, exist_ok=True)
        self.redis = redis
        self.conf = os.path.join(self.dir, "dbmail_tap.conf")
        self.statefile = os.path.join(self.dir, "state")
        self.logfile = os.path.join(self.dir, "imap.log")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.proc = None
        self.default = {
            "redis": redis.url if redis is not None else "redis://127.0.0.1:1",
            "ignoreip": "127.0.0.1/8 ::1",
            "maxretry": "3",
            "findtime": "10m",
            "bantime": "1h",
            "statefile": self.statefile,
            "banaction": banaction,
        }
        if default:
            self.default.update(default)
        if jails is None:
            jails = {"dbmail-imap": {"filter": "dbmail-imap", "logpath": self.logfile}}
        self.jails = jails
        self.write_config()

    def write_config(self):
        out = ["[DEFAULT]"]
        out += ["%s = %s" % kv for kv in self.default.items()]
        for name, keys in self.jails.items():
            out += ["", "[%s]" % name, "enabled = true"]
            out += ["%s = %s" % kv for kv in keys.items()]
        with open(self.conf, "w") as f:
            f.write("\n".join(out) + "\n")

    # ---- the daemon ----
    def start(self, *extra, wait_ready=True, wrapper=(), env=None):
        """wrapper: argv put in front (e.g. ip netns exec NS); it must exec
        the daemon so that signals reach it."""
        self.err = open(self.stderr_path, "ab")
        self.mark = os.path.getsize(self.stderr_path)
        full_env = None
        if env:
            full_env = dict(os.environ)
            full_env.update(env)
        self.proc = subprocess.Popen(
            list(wrapper) + [self.binary, "run", "-c", self.conf, "--log-level", "info"]
            + list(extra), stdout=subprocess.DEVNULL, stderr=self.err, env=full_env)
        if wait_ready:
            # Ready once every file is opened or known missing.
            wait_for(lambda: "MG0600" in self.log(), 5, what="daemon start")
            time.sleep(0.15)
        return self

    def command(self):
        return [self.binary, "run", "-c", self.conf]

    def log(self):
        with open(self.stderr_path, "rb") as f:
            f.seek(self.mark)
            return f.read().decode(errors="replace")

    def wait_log(self, pattern, timeout=5.0):
        rx = re.compile(pattern)
        return wait_for(lambda: rx.search(self.log()), timeout, what=pattern)

    def send(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(timeout=5)
            raise AssertionError("dbmail_tap did not stop on %s" % sig)
        finally:
            self.err.close()
        self.proc = None
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        if self.proc is not None:
            self.err.close()
        self.proc = None

    # ---- the CLI ----
    def cli(self, *args, config=True, timeout=20):
        argv = [self.binary] + list(args)
        if config:
            argv += ["-c", self.conf]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    # ---- Redis views ----
    def window(self, jail, addr):
        """Failures currently in addr's window for jail."""
        return window_count(self.redis, "mailguard:fail:%s:%s" % (jail, addr))

    def ban_score(self, addr):
        return self.redis.cmd("ZSCORE", "mailguard:bans", addr)

    def banned(self, addr):
        return self.ban_score(addr) is not None

    def history(self, addr):
        v = self.redis.cmd("HGET", "mailguard:history:%s" % addr, "count")
        return int(v) if v else 0


class UnixRedisServer:
    """A redis-server that also listens on a unix socket: a process inside
    another network namespace (which has its own loopback) still reaches
    it through the file system.  The test talks to it over TCP."""

    def __init__(self, tmpdir):
        from .redis import REDIS_SERVER, RedisError, RespClient
        from .ports import free_port
        self._server, self._err, self._client = REDIS_SERVER, RedisError, RespClient
        self.host = "127.0.0.1"
        self.port = free_port()
        self.dir = os.path.join(str(tmpdir), "redis-unix-%d" % self.port)
        os.makedirs(self.dir, exist_ok=True)
        self.sock = os.path.join(self.dir, "redis.sock")
        self.proc = None

    @property
    def url(self):
        return "unix:" + self.sock

    def start(self):
        self.proc = subprocess.Popen(
            [self._server, "--bind", self.host, "--port", str(self.port),
             "--unixsocket", self.sock, "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--daemonize", "no", "--protected-mode", "no",
             "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._ping, 10, 0.02, "redis-server with a unix socket")
        return self

    def _ping(self):
        try:
            return self.cmd("PING") == "PONG" and os.path.exists(self.sock)
        except (OSError, self._err):
            return False

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def cmd(self, *args):
        c = self._client(self.host, self.port)
        try:
            return c(*args)
        finally:
            c.close()
