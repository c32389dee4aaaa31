"""A real Dovecot IMAP server for the webmail tests.

It runs in the foreground (`dovecot -F`) from a configuration generated in
its own temporary directory: IMAP only, on a free loopback port, plaintext
logins allowed (loopback only), users from a passwd-file, mail in maildirs
under the directory.  It is stopped by PID and can be stopped and started
again on the same port (the outage tests).

Dovecot delays every failed login (auth_failure_delay, 2 s) and, per
client address, every later login after failures (its auth penalty, 2 s
doubling to 15 s, reset by a successful login).  Every webmail login comes
from 127.0.0.1, so a test that makes several failed logins pays for them
all; the tests here set auth_failure_delay to 0 and log a right password in
when they need the penalty gone (reset_penalty()).
"""
import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from .ports import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"

# The users every webmail test knows; the password of each is "right".
USERS = ["bob", "carol", "dave", "erin", "frank", "grace"]
PASSWORD = "right"


def have_dovecot():
    return os.path.exists(DOVECOT)


class Dovecot:
    def __init__(self, users=USERS, password=PASSWORD):
        self.users = list(users)
        self.password = password
        self.port = free_port("127.0.0.1")
        self.root = tempfile.mkdtemp(prefix="mg-dovecot-")
        os.chmod(self.root, 0o755)
        self.conf = os.path.join(self.root, "dovecot.conf")
        self.log = os.path.join(self.root, "dovecot.log")
        self.proc = None
        self._write()

    def _write(self):
        # The mail files belong to www-data, an unprivileged user every
        # Debian system has (Dovecot refuses to run a user as root).
        ent = pwd.getpwnam("www-data")
        home = os.path.join(self.root, "home")
        os.makedirs(home)
        with open(os.path.join(self.root, "users"), "w") as f:
            for u in self.users:
                d = os.path.join(home, u)
                os.makedirs(d)
                os.chown(d, ent.pw_uid, ent.pw_gid)
                f.write("%s:{PLAIN}%s:%d:%d::%s\n" % (u, self.password, ent.pw_uid,
                                                      ent.pw_gid, d))
        for sub in ("run", "state"):
            os.makedirs(os.path.join(self.root, sub))
        with open(self.conf, "w") as f:
            f.write("""# generated for one test; see tests/integration/support/dovecot.py
base_dir = {root}/run
state_dir = {root}/state
log_path = {log}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = 1
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0600
  }}
}}
""".format(root=self.root, log=self.log, port=self.port))

    def start(self, timeout=10):
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf],
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.root, "stderr.log"), "a"),
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("dovecot exited (%d):\n%s" % (self.proc.returncode,
                                                                 self.log_text()[-3000:]))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("dovecot did not answer on port %d" % self.port)

    def stop(self):
        """SIGTERM to the master by PID; its children follow it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None
        # The port is free again once nothing accepts on it.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                return
            time.sleep(0.05)

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def login_count(self, ok=None):
        """Logins Dovecot logged: all, or only successful / failed ones."""
        lines = [l for l in self.log_text().splitlines() if "imap-login:" in l]
        if ok is True:
            return sum(1 for l in lines if "Login: user=" in l)
        if ok is False:
            return sum(1 for l in lines if "auth failed" in l or "Disconnected" in l
                       and "Login: user=" not in l and "user=<" in l)
        return len(lines)

    def reset_penalty(self, user="bob"):
        """A right-password login from 127.0.0.1 clears Dovecot's penalty
        for that address."""
        c = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        try:
            c.login(user, self.password)
        finally:
            c.logout()
