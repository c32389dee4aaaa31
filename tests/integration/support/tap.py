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
    def start(self, *extra, wait_ready=True):
        self.err = open(self.stderr_path, "ab")
        self.mark = os.path.getsize(self.stderr_path)
        self.proc = subprocess.Popen(
            [self.binary, "run", "-c", self.conf, "--log-level", "info"] + list(extra),
            stdout=subprocess.DEVNULL, stderr=self.err)
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
        return self.redis.cmd("ZCARD", "mailguard:fail:%s:%s" % (jail, addr))

    def ban_score(self, addr):
        return self.redis.cmd("ZSCORE", "mailguard:bans", addr)

    def banned(self, addr):
        return self.ban_score(addr) is not None

    def history(self, addr):
        v = self.redis.cmd("HGET", "mailguard:history:%s" % addr, "count")
        return int(v) if v else 0
