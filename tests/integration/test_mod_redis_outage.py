"""Redis trouble never opens the door and never stalls a request (event MPM).

Redis stopped, paused (CLIENT PAUSE) or restarted mid-test: requests are
served without added latency, bans already known stay enforced, failures
are counted locally and bans made meanwhile reach Redis when it returns.
The error log gets one line when Redis goes away and one when it returns.
"""
import re
import time

import pytest

from support.httpd import httpd_factory, need_module  # noqa: F401  (fixtures)
from support.mailguard import GUARDED_VHOST, PROXY, status, ban_from_elsewhere, bans, now, wait_for
from support.redis import RedisServer

pytestmark = pytest.mark.usefixtures("need_module")

FAST = 0.1            # seconds: "no added latency" with room for a busy box
KNOWN = "203.0.113.60"
# Losing Redis is worth an error-level line; nothing else is.
REDIS_LINES = (r"(?i)redis",)
MG_TAG = re.compile(r"MG\d{4}")



def server(httpd_factory, url, **kw):
    return httpd_factory(redis=url, vhost_conf=GUARDED_VHOST, allow=REDIS_LINES, **kw)


def know_a_ban(srv, redis_server):
    def enforced():
        ban_from_elsewhere(redis_server, KNOWN, now() + 3600)
        return status(srv, KNOWN) == 403
    assert wait_for(enforced, within=10, step=0.3), "the module never enforced a ban from Redis"


def module_lines(srv, since):
    """Module log lines (tagged MGnnnn) since a mark."""
    return [l for l in srv.errlog_lines(since=since) if MG_TAG.search(l)]


def assert_fast(srv, n, **kw):
    for _ in range(n):
        r = srv.get("/static.txt", **kw)
        assert r.status == 200
        assert r.seconds < FAST, "request took %.3f s" % r.seconds


def test_redis_stopped_requests_stay_fast_and_known_bans_hold(redis_server, httpd_factory):
    srv = server(httpd_factory, redis_server.url, name="redis-stopped")
    know_a_ban(srv, redis_server)
    redis_server.stop()
    time.sleep(0.2)
    assert_fast(srv, 20, src="127.0.6.1")
    # Known bans outlive several failed resyncs.
    for _ in range(3):
        r = srv.get("/static.txt", src=PROXY, xff=KNOWN)
        assert r.status == 403 and r.seconds < FAST
        time.sleep(1.0)
    assert_fast(srv, 5, src="127.0.6.1")


def test_redis_stopped_failures_are_counted_locally_and_the_ban_reaches_redis_later(
        redis_server, httpd_factory):
    srv = server(httpd_factory, redis_server.url, name="redis-local")
    know_a_ban(srv, redis_server)
    redis_server.stop()
    me = "127.0.6.2"
    for _ in range(2):
        r = srv.basic_login_fail(src=me)
        assert r.status == 401 and r.seconds < FAST
    time.sleep(0.3)
    # The local ban is enforced at once, in every process.
    assert [srv.get("/static.txt", src=me).status for _ in range(6)] == [403] * 6
    assert_fast(srv, 5, src="127.0.6.3")
    # Redis returns (empty: no persistence): the queued ban is written.
    redis_server.start()
    took = wait_for(lambda: me in bans(redis_server), within=10, step=0.2)
    assert took is not None, "the ban made while Redis was down never reached Redis"
    assert bans(redis_server)[me] > now() + 3000
    assert srv.get("/static.txt", src=me).status == 403


def test_redis_outage_is_logged_once_going_and_once_returning(redis_server, httpd_factory):
    srv = server(httpd_factory, redis_server.url, name="redis-log")
    know_a_ban(srv, redis_server)
    mark = srv.mark()
    redis_server.stop()
    clients = ["127.0.6.%d" % n for n in range(10, 15)]
    for c in clients:
        # One failure each (below MaxRetry): counted, no ban notice.
        srv.basic_login_fail(src=c)
        srv.get("/static.txt", src=c)
    time.sleep(2.5)                      # a few failed resyncs
    for c in clients:
        srv.basic_login_fail(src=c.replace("127.0.6.", "127.0.7."))
    gone = module_lines(srv, mark)
    assert len(gone) == 1, "expected one line for Redis going away:\n" + "\n".join(gone)
    redis_server.start()
    for c in clients:
        srv.get("/static.txt", src=c)
    back = wait_for(lambda: len(module_lines(srv, mark)) >= 2, within=10, step=0.2)
    assert back is not None, "no line when Redis returned"
    time.sleep(2.5)                      # a few good resyncs
    for c in clients:
        srv.get("/static.txt", src=c)
    lines = module_lines(srv, mark)
    assert len(lines) == 2, "expected exactly two lines:\n" + "\n".join(lines)


def test_redis_paused_does_not_slow_non_login_requests(redis_server, httpd_factory):
    srv = server(httpd_factory, redis_server.url, name="redis-paused")
    know_a_ban(srv, redis_server)
    redis_server.cmd("CLIENT", "PAUSE", "3000", "ALL")
    t0 = time.monotonic()
    assert_fast(srv, 10, src="127.0.6.20")
    r = srv.get("/static.txt", src=PROXY, xff=KNOWN)
    assert r.status == 403 and r.seconds < FAST
    # A login failure now waits on Redis in its own worker only.
    srv.basic_login_fail(src="127.0.6.21", timeout=5)
    assert_fast(srv, 10, src="127.0.6.20")
    assert time.monotonic() - t0 < 3.0, "the checks outlasted the pause: not a test of it"
    time.sleep(max(0.0, 3.2 - (time.monotonic() - t0)))
    assert_fast(srv, 5, src="127.0.6.20")


def test_redis_restarted_keeps_working(redis_server, httpd_factory):
    srv = server(httpd_factory, redis_server.url, name="redis-restart", sync_interval="1m")
    know_a_ban(srv, redis_server)
    redis_server.restart()
    # Failures reach the new Redis (the old connection is gone) ...
    me = "127.0.6.30"
    for _ in range(2):
        assert srv.basic_login_fail(src=me).status == 401
    assert wait_for(lambda: me in bans(redis_server), within=10, step=0.2), \
        "a ban made after the restart did not reach Redis"
    # ... and the subscription is back: a published ban is enforced quickly.
    other = "203.0.113.61"

    def enforced():
        ban_from_elsewhere(redis_server, other, now() + 3600)
        return status(srv, other) == 403
    assert wait_for(enforced, within=10, step=0.3), "no ban enforced after the restart"
    third = "203.0.113.62"
    ban_from_elsewhere(redis_server, third, now() + 3600)
    assert wait_for(lambda: status(srv, third) == 403, within=1.0, step=0.02) is not None
    assert_fast(srv, 5, src="127.0.6.32")


def test_redis_down_at_start_then_available(tmp_path, httpd_factory):
    redis = RedisServer(tmp_path)          # port chosen, not started yet
    try:
        srv = server(httpd_factory, redis.url, name="redis-late")
        assert_fast(srv, 5, src="127.0.6.40")
        me = "127.0.6.41"
        for _ in range(2):
            assert srv.basic_login_fail(src=me).status == 401
        time.sleep(0.3)
        assert srv.get("/static.txt", src=me).status == 403
        redis.start()
        assert wait_for(lambda: me in bans(redis), within=10, step=0.2), \
            "the ban made before Redis was reachable never reached it"
        ban_from_elsewhere(redis, "203.0.113.63", now() + 3600, publish=False)
        assert wait_for(lambda: status(srv, "203.0.113.63") == 403, within=5)
        # httpd stops first: it must not see Redis vanish at teardown.
        srv.stop()
    finally:
        redis.stop()


def test_graceful_restart_with_redis_down_keeps_known_bans(redis_server, httpd_factory):
    srv = server(httpd_factory, redis_server.url, name="restart-keeps")
    know_a_ban(srv, redis_server)
    me = "127.0.6.50"
    for _ in range(2):
        assert srv.basic_login_fail(src=me).status == 401
    time.sleep(0.3)
    redis_server.stop()
    # A new generation of children (apachectl graceful) must not start
    # from an empty mirror while Redis cannot be asked.
    mark = srv.mark()
    srv.graceful()
    assert wait_for(lambda: "AH00489" in "\n".join(srv.errlog_lines(since=mark))
                    or "resuming normal operations" in "\n".join(srv.errlog_lines(since=mark)),
                    within=10, step=0.1), "no graceful restart happened"
    time.sleep(1.5)
    assert status(srv, KNOWN) == 403
    assert srv.get("/static.txt", src=me).status == 403
    assert_fast(srv, 5, src="127.0.6.51")
