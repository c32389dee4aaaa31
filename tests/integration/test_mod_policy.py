"""Jail policy over time: FindTime windows and BanTime escalation
(event MPM, the Basic-auth login stand-in)."""
import time

import pytest

from support.httpd import httpd_factory, need_module  # noqa: F401  (fixtures)
from support.mailguard import Events, bans, now, unban_from_elsewhere

pytestmark = pytest.mark.usefixtures("need_module")

SETTLE = 0.2


def fail(srv, n, **kw):
    for _ in range(n):
        assert srv.basic_login_fail(**kw).status == 401
    time.sleep(SETTLE)


def test_failures_older_than_findtime_are_forgotten(redis_server, httpd_factory):
    srv = httpd_factory(redis=redis_server.url, name="findtime", vhost_conf="""
    MailGuardEngine On
    MailGuardWatch roundcube
    MailGuardMaxRetry 2
    MailGuardFindTime 2s
""")
    me = "127.0.9.1"
    fail(srv, 1, src=me)
    time.sleep(2.5)
    fail(srv, 1, src=me)
    assert srv.get("/static.txt", src=me).status == 200
    assert me not in bans(redis_server)
    fail(srv, 1, src=me)
    assert srv.get("/static.txt", src=me).status == 403


def test_repeat_offender_ban_time_grows_up_to_the_maximum(redis_server, httpd_factory):
    srv = httpd_factory(redis=redis_server.url, name="increment", vhost_conf="""
    MailGuardEngine On
    MailGuardWatch roundcube
    MailGuardMaxRetry 1
    MailGuardBanTime 1h
    MailGuardBanTimeIncrement On
    MailGuardBanTimeFactor 3
    MailGuardBanTimeMax 5h
""")
    me = "127.0.9.2"
    lengths = []
    for _ in range(3):
        t = now()
        fail(srv, 1, src=me)
        assert srv.get("/static.txt", src=me).status == 403
        lengths.append(bans(redis_server)[me] - t)
        # An operator lifts the ban; the history stays.
        unban_from_elsewhere(redis_server, me)
        deadline = time.monotonic() + 2
        while srv.get("/static.txt", src=me).status != 200:
            assert time.monotonic() < deadline, "unban not applied"
            time.sleep(0.05)
    # 1h, then 1h * 3, then 1h * 9 capped at 5h.
    for got, want in zip(lengths, (3600, 3 * 3600, 5 * 3600)):
        assert want - 10 <= got <= want + 10, lengths


def test_ban_time_without_increment_stays_the_same(redis_server, httpd_factory):
    srv = httpd_factory(redis=redis_server.url, name="no-increment", vhost_conf="""
    MailGuardEngine On
    MailGuardWatch roundcube
    MailGuardMaxRetry 1
    MailGuardBanTime 30m
""")
    me = "127.0.9.3"
    ev = Events(redis_server)
    try:
        for _ in range(2):
            t = now()
            fail(srv, 1, src=me)
            assert 1800 - 10 <= bans(redis_server)[me] - t <= 1800 + 10
            unban_from_elsewhere(redis_server, me)
            time.sleep(0.5)
        msgs = [m for m in ev.collect(timeout=0.5) if m.startswith("ban ")]
    finally:
        ev.close()
    assert len(msgs) == 2, msgs


def test_concurrent_failures_are_counted_exactly(redis_server, httpd_factory):
    from concurrent.futures import ThreadPoolExecutor
    srv = httpd_factory(redis=redis_server.url, name="concurrent", vhost_conf="""
    MailGuardEngine On
    MailGuardWatch roundcube
    MailGuardMaxRetry 10
    MailGuardBanTime 1h
""")
    client = "203.0.113.90"

    def burst(n):
        with ThreadPoolExecutor(max_workers=n) as pool:
            return list(pool.map(lambda _: srv.basic_login_fail(src="127.0.0.1", xff=client).status,
                                 range(n)))

    # Nine at once, on both children: one short of the threshold.
    assert burst(9) == [401] * 9
    time.sleep(SETTLE)
    assert srv.get("/static.txt", src="127.0.0.1", xff=client).status == 200
    assert client not in bans(redis_server)
    ev = Events(redis_server)
    try:
        statuses = burst(6)
        msgs = [m for m in ev.collect(timeout=1.0) if m.startswith("ban ")]
    finally:
        ev.close()
    assert statuses.count(401) >= 1
    assert set(statuses) <= {401, 403}
    assert [m.split()[1] for m in msgs] == [client], msgs
    assert srv.get("/static.txt", src="127.0.0.1", xff=client).status == 403
