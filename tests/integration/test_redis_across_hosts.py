"""Redis across hosts, the supported way: hiredis 0.14 (Debian 12) has no
TLS, so each host runs spiped, which encrypts and authenticates the
connection with a shared key, and the programs talk to its local end.  Redis
listens on loopback only (here the "other host" is simulated by a second
loopback port), and the programs log in as the dedicated ACL user from the
README.  A failure counted through the tunnel bans, and the ban comes back
to the mirror through it; traffic without the key gets nowhere.
"""
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from support.httpd import httpd_factory, need_module  # noqa: F401  (fixtures)
from support.mailguard import PROXY, now, wait_for
from support.ports import free_port
from support.tap import TapDaemon, append, imap_fail

pytestmark = pytest.mark.usefixtures("need_module")

SPIPED = shutil.which("spiped") or "/usr/bin/spiped"
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VHOST = """
    MailGuardEngine On
    MailGuardWatch roundcube
    MailGuardMaxRetry 2
    RemoteIPHeader X-Forwarded-For
    RemoteIPInternalProxy 127.0.0.1
"""


def readme_acl_line():
    text = open(os.path.join(ROOT, "README.md")).read()
    return re.search(r"^ACL SETUSER mailguard on >SECRET (.*)$", text, re.M).group(1).split()


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def tunnel(tmp_path, redis_server):
    """spiped: the "Redis host" end decrypts into Redis, the "web host" end
    encrypts what the programs send to it."""
    if not os.path.exists(SPIPED):
        pytest.skip("spiped is not installed")
    key = os.path.join(str(tmp_path), "redis.key")
    with open(key, "wb") as f:
        f.write(os.urandom(32))
    os.chmod(key, 0o600)
    server_port, client_port = free_port(), free_port()
    procs = [
        subprocess.Popen([SPIPED, "-F", "-d", "-s", "[127.0.0.1]:%d" % server_port,
                          "-t", "[127.0.0.1]:%d" % redis_server.port, "-k", key]),
        subprocess.Popen([SPIPED, "-F", "-e", "-s", "[127.0.0.1]:%d" % client_port,
                          "-t", "[127.0.0.1]:%d" % server_port, "-k", key]),
    ]
    try:
        for port in (server_port, client_port):
            assert wait_for(lambda p=port: listening(p), within=5), "spiped did not listen"
        # the ACL user, exactly as the README gives it
        redis_server.cmd("ACL", "SETUSER", "mailguard", "on", ">Tunnel-Pw9",
                         *readme_acl_line())
        yield {"port": client_port, "server_port": server_port}
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=5)


def test_the_module_and_the_tap_work_through_spiped_as_the_acl_user(tunnel, redis_server,
                                                                   httpd_factory, build_dir,
                                                                   tmp_path):
    url = "redis://mailguard:Tunnel-Pw9@127.0.0.1:%d" % tunnel["port"]
    srv = httpd_factory(redis=url, vhost_conf=VHOST, name="spiped")
    for _ in range(2):
        srv.basic_login_fail(src=PROXY, xff="203.0.113.70")
    assert wait_for(lambda: redis_server.cmd("ZSCORE", "mailguard:bans", "203.0.113.70"),
                    within=5)
    tap = TapDaemon(build_dir, tmp_path, None, default={"redis": url})
    open(tap.logfile, "w").close()
    tap.start()
    try:
        for _ in range(3):
            append(tap.logfile, imap_fail("198.51.100.70"))
        assert wait_for(lambda: redis_server.cmd("ZSCORE", "mailguard:bans", "198.51.100.70"),
                        within=5)
        # and back to the mirror, through the tunnel, as the ACL user
        assert wait_for(lambda: srv.get("/static.txt", src=PROXY, xff="198.51.100.70").status
                        == 403, within=5)
        assert tap.stop() == 0
    finally:
        tap.kill()
    # plain Redis protocol to the tunnel's far end gets no answer: only
    # the key opens it
    s = socket.create_connection(("127.0.0.1", tunnel["server_port"]), 2)
    s.settimeout(1.0)
    s.sendall(b"PING\r\n")
    try:
        data = s.recv(100)
    except socket.timeout:
        data = b""
    s.close()
    assert b"PONG" not in data
