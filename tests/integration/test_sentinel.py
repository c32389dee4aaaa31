"""Redis behind Sentinel: a failover is followed by the module and by
dbmail_tap without a restart (real redis-server primary and replica, three
real redis-sentinel processes, all on loopback).

Under steady webmail failures and IMAP log lines, SENTINEL FAILOVER moves
the primary.  Both programs find the new primary within 5 s, no request
waits longer than usual, and every ban made before and during the switch
ends up in the new primary's set and is enforced.
"""
import threading
import time

import pytest

from support.httpd import httpd_factory, need_module  # noqa: F401  (fixtures)
from support.mailguard import PROXY, now, wait_for
from support.sentinel import SentinelSetup
from support.tap import TapDaemon, append, imap_fail

pytestmark = pytest.mark.usefixtures("need_module")

VHOST = """
    MailGuardEngine On
    MailGuardWatch roundcube
    MailGuardMaxRetry 3
    MailGuardBanTime 1h
    RemoteIPHeader X-Forwarded-For
    RemoteIPInternalProxy 127.0.0.1
"""
REDIS_LINES = (r"(?i)redis",)


@pytest.fixture
def ha(tmp_path):
    setup = SentinelSetup(tmp_path).start()
    yield setup
    setup.stop()


def live(node):
    flat = node.cmd("ZRANGEBYSCORE", "mailguard:bans", int(now()), "+inf")
    return set(flat)


def webmail_ban(srv, addr):
    for _ in range(3):
        srv.basic_login_fail(src=PROXY, xff=addr)


def test_a_failover_is_followed_by_the_module_and_the_tap(ha, httpd_factory, build_dir,
                                                        tmp_path):
    srv = httpd_factory(redis=ha.url, vhost_conf=VHOST, name="sentinel", allow=REDIS_LINES)
    tap = TapDaemon(build_dir, tmp_path, None, default={"redis": ha.url})
    open(tap.logfile, "w").close()
    tap.start()
    try:
        old = ha.primary()
        # before: a ban from each program, in the primary and enforced
        webmail_ban(srv, "203.0.113.10")
        for _ in range(3):
            append(tap.logfile, imap_fail("198.51.100.10"))
        assert wait_for(lambda: {"203.0.113.10", "198.51.100.10"} <= live(old), within=5)
        assert wait_for(lambda: srv.get("/static.txt", src=PROXY, xff="198.51.100.10").status
                        == 403, within=5)

        # steady load during the switch: webmail failures from new addresses
        # every 50 ms, and requests whose time is measured
        stop = threading.Event()
        slow = []
        made = []

        def load():
            i = 0
            while not stop.is_set() and i < 2000:
                addr = "203.0.113.%d" % (100 + (i // 3) % 100)
                r = srv.basic_login_fail(src=PROXY, xff=addr)
                if r.seconds > 1.0:
                    slow.append(r.seconds)
                if i % 3 == 2:
                    made.append(addr)
                r = srv.get("/static.txt", src="127.0.7.9")
                if r.seconds > 1.0:
                    slow.append(r.seconds)
                i += 1
                time.sleep(0.05)

        th = threading.Thread(target=load)
        th.start()
        try:
            time.sleep(1)
            new = ha.failover()
            t_switch = time.monotonic()
            # the tap: a failure logged now is counted in the new primary
            # within 5 s of the switch
            for _ in range(3):
                append(tap.logfile, imap_fail("198.51.100.20"))
            assert wait_for(lambda: "198.51.100.20" in live(new),
                            within=5 - (time.monotonic() - t_switch) + 0.5), tap.log()
            tap_took = time.monotonic() - t_switch
            # the module: a ban made now, on the new primary, is enforced
            webmail_ban(srv, "203.0.113.30")
            assert wait_for(lambda: "203.0.113.30" in live(new), within=5)
            module_took = time.monotonic() - t_switch
            time.sleep(2)
        finally:
            stop.set()
            th.join(30)
        assert tap_took <= 5 and module_took <= 5, (tap_took, module_took)
        assert not slow, "requests waited: %s" % slow
        # every ban, made before or during the switch, is in the new
        # primary's set and enforced by the module
        want = {"203.0.113.10", "198.51.100.10", "198.51.100.20", "203.0.113.30"} | set(made)
        assert wait_for(lambda: want <= live(new), within=10), sorted(want - live(new))
        for addr in sorted(want):
            assert wait_for(lambda a=addr: srv.get("/static.txt", src=PROXY, xff=a).status == 403,
                            within=5), addr
        assert srv.get("/static.txt", src=PROXY, xff="192.0.2.99").status == 200
        assert tap.stop() == 0
    finally:
        tap.kill()
