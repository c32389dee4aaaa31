"""Drills for the module: the event MPM under wrk load, attackers failing
through the trusted proxy from rotating addresses, and Redis faults,
graceful restarts and a restore of the whole mirror on top.  Every
attacker must be banned at exactly MailGuardMaxRetry (one ban line saying
"5 failures", a history of one ban), the breaker must never trip while
Redis is healthy, no request may wait past its timeout, and each Redis
state change is one log line.
"""
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import scaled
from support.http import HttpConn
from support.httpd import httpd_factory, need_module  # noqa: F401  (fixtures)
from support.mailguard import PROXY, ban_from_elsewhere, bans, now, script, wait_for

pytestmark = pytest.mark.usefixtures("need_module")

WRK = "/usr/bin/wrk"
VHOST = """
    MailGuardEngine On
    MailGuardWatch roundcube
    MailGuardMaxRetry 5
    MailGuardFindTime 10m
    MailGuardBanTime 1h
"""
# Losing Redis is worth an error line; so, under a drill's load, is httpd
# saying it is near MaxRequestWorkers.
REDIS_LINES = (r"(?i)redis", r"AH10159|AH00484")


WRK_MISSING = ("wrk is not installed: make drills installs it when run as root "
               "(sh build/deps.sh --drills)")


@pytest.fixture
def need_wrk():
    """Skip before any server starts: the load is half of these drills."""
    if not os.path.exists(WRK):
        pytest.skip(WRK_MISSING)


class Wrk:
    """wrk on a static file for the whole drill, in the background."""

    def __init__(self, srv, seconds):
        if not os.path.exists(WRK):
            pytest.skip(WRK_MISSING)
        self.seconds = seconds
        self.proc = subprocess.Popen(
            [WRK, "-t2", "-c8", "-d%ds" % seconds, "--timeout", "2s", "--latency",
             "http://127.0.0.1:%d/static.txt" % srv.port],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def result(self):
        out, _ = self.proc.communicate(timeout=600)
        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        timeouts = int(m.group(4)) if m else 0
        # a read error is the server closing a keep-alive connection at
        # MaxKeepAliveRequests, not a failure; a connect error or a
        # non-2xx answer is one
        errors = int(m.group(1)) if m else 0
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        errors += int(bad.group(1)) if bad else 0
        n = re.search(r"(\d+) requests in ([\d.]+)(m?s|m)", out)
        ran = 0.0
        if n:
            ran = float(n.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[n.group(3)]
        # wrk's threads stop at the next tick after -d whatever the server
        # does, so a run that overshoots by more than the timeout means wrk
        # itself was frozen (a starved machine), and so were its clocks
        return {"requests": int(n.group(1)) if n else 0, "timeouts": timeouts,
                "errors": errors, "text": out, "stalled": ran - self.seconds > 2.0}


def assert_no_wait(srv, w):
    """No request waited past wrk's 2 s timeout.  Timeouts counted while
    wrk itself was frozen are judged by the server's own clock instead:
    every static request's %D in the access log."""
    if w["timeouts"] == 0:
        return
    assert w["stalled"], w["text"]
    worst = max(int(l.rsplit(" ", 1)[1]) for l in srv.access_log() if " /static.txt " in l)
    print("\nwrk was frozen (%d timeouts on its clock); slowest static request on "
          "the server's: %.1f ms" % (w["timeouts"], worst / 1000.0))
    assert worst < 2000000, (worst, w["text"])


def attackers(srv, addrs, rate=20.0, per=5, stop=None, fault=None):
    """Each address fails `per` times, the addresses interleaved, `rate`
    failures a second in all.  fault(i) is called before failure i."""
    plan = [a for k in range(per) for a in addrs]
    # interleave in windows of five addresses so each one's failures are
    # spread over about a second
    order = []
    for w in range(0, len(addrs), 5):
        group = addrs[w:w + 5]
        order += [a for _ in range(per) for a in group]
    assert len(order) == len(plan)
    t0 = time.monotonic()
    for i, a in enumerate(order):
        if stop is not None and stop.is_set():
            break
        if fault is not None:
            fault(i)
        srv.basic_login_fail(src=PROXY, xff=a)
        time.sleep(max(0, t0 + (i + 1) / rate - time.monotonic()))


def assert_banned_at_exactly(srv, redis, addrs, n=5):
    assert wait_for(lambda: set(addrs) <= set(bans(redis)), within=20), \
        sorted(set(addrs) - set(bans(redis)))[:10]
    def made(a, lines):
        return re.findall(r"MG0050: Ban %s \(jail webmail, (\d+) failures" % re.escape(a), lines)

    # Redis shows a ban a moment before the server that made it logs it
    wait_for(lambda: all(made(a, srv.errlog_text()) for a in addrs), within=5)
    lines = srv.errlog_text()
    for a in addrs:
        got = made(a, lines)
        assert got == [str(n)], (a, got)
        assert redis.cmd("HGET", "mailguard:history:%s" % a, "count") == "1", a


def fill_bans(redis, n, expiry):
    c = redis.client()
    for i in range(0, n, 1000):
        args = ["ZADD", "mailguard:bans"]
        for j in range(i, min(n, i + 1000)):
            args += [str(expiry), "10.%d.%d.%d" % (j >> 16, (j >> 8) & 255, j & 255)]
        c.send(*args)
    for i in range(0, n, 1000):
        c.read_reply()
    c.close()


def server(httpd_factory, redis, name, **kw):
    return httpd_factory(redis=redis.url, vhost_conf=VHOST, name=name, allow=REDIS_LINES, **kw)


@pytest.mark.usefixtures("need_wrk")
def test_soak_every_attacker_banned_at_exactly_maxretry_and_no_false_outage(
        redis_server, httpd_factory):
    seconds = scaled(60, 12)
    fill_bans(redis_server, 50000, int(now()) + 7200)
    srv = server(httpd_factory, redis_server, "soak")
    assert wait_for(lambda: srv.get("/static.txt", src=PROXY, xff="10.0.0.7").status == 403,
                    within=20)
    addrs = ["203.0.%d.%d" % (113 + i // 250, 1 + i % 250) for i in range(seconds * 20 // 5)]
    load = Wrk(srv, seconds + 2)
    time.sleep(1)
    attackers(srv, addrs)
    w = load.result()
    assert_banned_at_exactly(srv, redis_server, addrs)
    assert "MG0032" not in srv.errlog_text(), "the breaker tripped while Redis was healthy"
    assert w["errors"] == 0, w["text"]
    assert_no_wait(srv, w)
    assert w["requests"] > 0


FAULTS = ["pause", "empty restart", "wrong password", "out of memory"]


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.usefixtures("need_wrk")
def test_a_redis_fault_under_load_splits_failures_and_bans_at_exactly_maxretry(
        fault, redis_factory, httpd_factory):
    redis = redis_factory(password="drill-Pw1") if fault == "wrong password" else \
        redis_factory()
    srv = server(httpd_factory, redis, "fault-" + fault.replace(" ", "-"))
    addrs = ["198.51.100.%d" % (10 + i) for i in range(5)]
    load = Wrk(srv, 30)
    mark = srv.mark()

    def before(n):
        for _ in range(n):
            for a in addrs:
                srv.basic_login_fail(src=PROXY, xff=a)

    before(2)
    fill = None
    if fault == "pause":
        redis.proc.send_signal(signal.SIGSTOP)
    elif fault == "empty restart":
        redis.stop()
    elif fault == "wrong password":
        redis.cmd("CONFIG", "SET", "requirepass", "other-Pw2")
        redis.password = "other-Pw2"
        redis.cmd("CLIENT", "KILL", "TYPE", "normal")
    else:
        used = int(re.search(r"used_memory:(\d+)", redis.cmd("INFO", "memory")).group(1))
        redis.cmd("CONFIG", "SET", "maxmemory-policy", "noeviction")
        redis.cmd("CONFIG", "SET", "maxmemory", str(used + 200000))
        redis.cmd("EVAL", "for i=1,5000 do redis.call('SET','fill'..i,string.rep('x',100)) "
                  "end return 1", 0)
        fill = 5000
    time.sleep(0.5)
    before(2)
    time.sleep(1.5)
    if fault == "pause":
        redis.proc.send_signal(signal.SIGCONT)
    elif fault == "empty restart":
        redis.start()
    elif fault == "wrong password":
        redis.cmd("CONFIG", "SET", "requirepass", "drill-Pw1")
        redis.password = "drill-Pw1"
    else:
        for i in range(1, fill + 1):
            redis.cmd("DEL", "fill%d" % i)
        redis.cmd("CONFIG", "SET", "maxmemory", "0")
    assert wait_for(lambda: any("MG0031" in l for l in srv.errlog_lines(since=mark)),
                    within=15), srv.errlog_lines(since=mark)
    # what was queued during the fault reaches Redis before the last one
    assert wait_for(lambda: all(redis.cmd("ZCARD", "mailguard:fail:webmail:%s" % a) == 4
                                for a in addrs), within=15), \
        [redis.cmd("ZCARD", "mailguard:fail:webmail:%s" % a) for a in addrs]
    before(1)
    assert_banned_at_exactly(srv, redis, addrs)
    w = load.result()
    lines = srv.errlog_lines(since=mark)
    assert len([l for l in lines if "MG0032" in l]) == 1, lines
    assert len([l for l in lines if "MG0031" in l]) == 1, lines
    assert w["errors"] == 0, w["text"]
    assert_no_wait(srv, w)


@pytest.mark.usefixtures("need_wrk")
def test_graceful_restarts_under_load_keep_bans_and_counts(redis_server, httpd_factory):
    restarts = scaled(10, 3)
    srv = server(httpd_factory, redis_server, "graceful")
    ban_from_elsewhere(redis_server, "192.0.2.1", now() + 3600)
    assert wait_for(lambda: srv.get("/static.txt", src=PROXY, xff="192.0.2.1").status == 403,
                    within=5)
    stop = threading.Event()
    leaks = []

    def watch():
        while not stop.is_set():
            r = srv.get("/static.txt", src=PROXY, xff="192.0.2.1")
            if r.status == 200:
                leaks.append(time.monotonic())
            time.sleep(0.05)

    th = threading.Thread(target=watch)
    th.start()
    load = Wrk(srv, restarts * 2 + 6)
    addrs = ["203.0.113.%d" % (100 + i) for i in range(restarts * 4)]
    att = threading.Thread(target=attackers, args=(srv, addrs, 10.0))
    att.start()
    try:
        for _ in range(restarts):
            time.sleep(2)
            srv.graceful()
    finally:
        att.join(120)
        stop.set()
        th.join(30)
    w = load.result()
    assert not leaks, "the banned address was served %d times" % len(leaks)
    assert_banned_at_exactly(srv, redis_server, addrs)
    assert_no_wait(srv, w)


def test_restoring_50000_bans_into_an_empty_redis_does_not_hold_up_new_bans(
        redis_server, httpd_factory):
    n = scaled(50000, 20000)
    fill_bans(redis_server, n, int(now()) + 7200)
    # MG0062 (bans written back) is an info line: the outage was logged
    srv = server(httpd_factory, redis_server, "restore", log_level="notice mailguard:info")
    assert wait_for(lambda: srv.get("/static.txt", src=PROXY, xff="10.0.0.9").status == 403,
                    within=20)
    redis_server.restart()          # empty: the mirror must write them back
    # The sync process finds Redis again after its back-off (about a
    # second, measured apart): a ban made meanwhile waits for that, not
    # for the restore.  The trials start when the writing back does.
    back = wait_for(lambda: redis_server.cmd("ZCARD", "mailguard:bans") > 0, within=10)
    assert back is not None, "the mirror was never written back"
    assert back <= 3, "%.1f s before the sync process was back" % back
    sha = redis_server.cmd("SCRIPT", "LOAD", script("ban"))
    conn = HttpConn(srv.port)
    lat = []
    t_end = time.monotonic() + 30
    i = during = 0
    # a ban made elsewhere every 20 ms while the restore runs
    while time.monotonic() < t_end and (redis_server.cmd("ZCARD", "mailguard:bans") < n
                                        or len(lat) < 50):
        during += redis_server.cmd("ZCARD", "mailguard:bans") < n
        addr = "198.18.%d.%d" % (i // 250, 1 + i % 250)
        t0 = time.monotonic()
        redis_server.cmd("EVALSHA", sha, 0, "mailguard:", "elsewhere", addr,
                         str(int(now()) + 3600))
        while time.monotonic() - t0 < 2:
            st, _, _ = conn.request("/static.txt", headers=["X-Forwarded-For: %s" % addr])
            if st == 403:
                break
        lat.append((time.monotonic() - t0) * 1000)
        i += 1
        time.sleep(0.02)
    assert redis_server.cmd("ZCARD", "mailguard:bans") >= n, "not every ban was written back"
    lat.sort()
    p99 = lat[int(len(lat) * 0.99) - 1]
    print("\nrestore of %d bans: sync back after %.2f s, %d trials (%d during the restore), "
          "propagation p50 %.1f ms, p99 %.1f ms, worst %.1f ms"
          % (n, back, len(lat), during, lat[len(lat) // 2], p99, lat[-1]))
    assert p99 <= 50, "propagation p99 %.1f ms during the restore (%d trials, worst %s)" % (
        p99, len(lat), ["%.1f" % x for x in lat[-8:]])
    assert any("MG0062" in l for l in srv.errlog_lines())
