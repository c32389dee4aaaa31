"""The ban-set mirror follows Redis (event MPM, MailGuardSyncInterval 1s).

Other hosts (dbmail_tap, other webmail servers, an operator's
`dbmail_tap ban`) change `mailguard:bans` through the store's scripts, which
log every change; the mirror follows that log.  A bare ZADD/ZREM (a hand
edit) is noticed by the sync job's check, every half MailGuardSyncInterval,
and the whole set is read again.  Banned clients are documentation
addresses forwarded by the trusted proxy 127.0.0.1.
"""
import time

import pytest

from support.httpd import httpd_factory, need_module  # noqa: F401  (fixtures)
from support.mailguard import (GUARDED_VHOST, status, ban_from_elsewhere, now,
                               unban_from_elsewhere, wait_for)

pytestmark = pytest.mark.usefixtures("need_module")

SYNC = 1.0            # MailGuardSyncInterval in these tests
SLACK = 1.0           # scheduling, one request round, a slow CI box



def server(httpd_factory, redis_server, **kw):
    return httpd_factory(redis=redis_server.url, vhost_conf=GUARDED_VHOST, **kw)


def wait_ready(srv, redis_server):
    """Wait until the mirror has done its first sync: a published ban of a
    sentinel address is enforced.  Then remove the sentinel again."""
    sentinel = "198.51.100.250"

    ban_from_elsewhere(redis_server, sentinel, now() + 3600)
    assert wait_for(lambda: status(srv, sentinel) == 403, within=10, step=0.1), \
        "the module never enforced a ban from Redis"
    unban_from_elsewhere(redis_server, sentinel)
    assert wait_for(lambda: status(srv, sentinel) == 200, within=SYNC + SLACK)


def test_ban_published_by_another_host_is_enforced_within_one_second(redis_server, httpd_factory):
    # A sync interval longer than the test: only the change log can do it.
    srv = server(httpd_factory, redis_server, name="published", sync_interval="1m")
    wait_ready(srv, redis_server)
    for n, addr in enumerate(("203.0.113.40", "2001:db8:40::/64")):
        t0 = time.monotonic()
        ban_from_elsewhere(redis_server, addr, now() + 3600, jail="imap")
        probe = "203.0.113.40" if n == 0 else "2001:db8:40::1234"
        took = wait_for(lambda: status(srv, probe) == 403, within=1.0, step=0.02)
        assert took is not None, "ban of %s not enforced within 1 s" % addr
        assert time.monotonic() - t0 <= 1.0 + 0.2
    assert status(srv, "203.0.113.41") == 200


def test_ban_added_without_message_is_enforced_within_the_sync_interval(redis_server, httpd_factory):
    srv = server(httpd_factory, redis_server, name="bare-zadd")
    wait_ready(srv, redis_server)
    addr = "203.0.113.42"
    ban_from_elsewhere(redis_server, addr, now() + 3600, publish=False)
    took = wait_for(lambda: status(srv, addr) == 403, within=SYNC + SLACK)
    assert took is not None, "a bare ZADD was not noticed within the sync interval"


def test_bans_present_at_start_are_enforced(redis_server, httpd_factory):
    ban_from_elsewhere(redis_server, "203.0.113.43", now() + 3600, publish=False)
    ban_from_elsewhere(redis_server, "203.0.113.44", float("inf"), publish=False)
    srv = server(httpd_factory, redis_server, name="at-start")
    assert wait_for(lambda: status(srv, "203.0.113.43") == 403, within=SYNC + SLACK)
    assert status(srv, "203.0.113.44") == 403
    assert status(srv, "203.0.113.45") == 200


def test_unban_message_lifts_a_ban_within_one_second(redis_server, httpd_factory):
    srv = server(httpd_factory, redis_server, name="unban", sync_interval="1m")
    wait_ready(srv, redis_server)
    addr = "203.0.113.46"
    ban_from_elsewhere(redis_server, addr, now() + 3600)
    assert wait_for(lambda: status(srv, addr) == 403, within=1.0)
    unban_from_elsewhere(redis_server, addr)
    assert wait_for(lambda: status(srv, addr) == 200, within=1.0, step=0.02) is not None


def test_zrem_lifts_a_ban_within_the_sync_interval(redis_server, httpd_factory):
    srv = server(httpd_factory, redis_server, name="zrem")
    wait_ready(srv, redis_server)
    addr = "203.0.113.47"
    ban_from_elsewhere(redis_server, addr, now() + 3600)
    assert wait_for(lambda: status(srv, addr) == 403, within=1.0)
    unban_from_elsewhere(redis_server, addr, publish=False)
    took = wait_for(lambda: status(srv, addr) == 200, within=SYNC + SLACK)
    assert took is not None, "ZREM without a message was not picked up by the resync"


def test_zrem_lifts_a_ban_made_by_this_server(redis_server, httpd_factory):
    srv = server(httpd_factory, redis_server, name="zrem-own")
    me = "127.0.5.1"
    for _ in range(2):
        assert srv.basic_login_fail(src=me).status == 401
    time.sleep(0.2)
    assert srv.get("/static.txt", src=me).status == 403
    unban_from_elsewhere(redis_server, me, publish=False)
    took = wait_for(lambda: srv.get("/static.txt", src=me).status == 200, within=SYNC + SLACK)
    assert took is not None


def test_expired_members_are_not_enforced(redis_server, httpd_factory):
    srv = server(httpd_factory, redis_server, name="expired")
    wait_ready(srv, redis_server)
    old = "203.0.113.48"
    ban_from_elsewhere(redis_server, old, now() - 30)
    ban_from_elsewhere(redis_server, old + "9", now() - 30, publish=False)
    deadline = time.monotonic() + SYNC * 2 + 0.5
    while time.monotonic() < deadline:
        assert status(srv, old) == 200
        assert status(srv, old + "9") == 200
        time.sleep(0.1)


def test_ban_ends_when_its_expiry_passes(redis_server, httpd_factory):
    srv = server(httpd_factory, redis_server, name="expiry")
    wait_ready(srv, redis_server)
    addr = "203.0.113.49"
    expiry = int(now()) + 3
    ban_from_elsewhere(redis_server, addr, expiry)
    assert wait_for(lambda: status(srv, addr) == 403, within=1.0)
    took = wait_for(lambda: status(srv, addr) == 200, within=6)
    assert took is not None, "the ban outlived its expiry"
    assert now() >= expiry - 0.1


def test_garbage_in_the_ban_set_or_the_change_log_is_ignored(redis_server, httpd_factory):
    srv = server(httpd_factory, redis_server, name="garbage", allow=(r"MG\d+.*(?i:ignor|pars|invalid|bad)",))
    wait_ready(srv, redis_server)
    exp = int(now()) + 3600
    for member in ("not-an-address", "203.0.113.300", "", "1.2.3.4/0", "2001:db8::/200"):
        redis_server.cmd("ZADD", "mailguard:bans", exp, member)
    # log entries no script wrote: no sequence number, or not a change
    for fields in (("e", "ban 203.0.113.50 %d imap" % exp), ("s", "x", "e", "ban"),
                   ("e", "bogus words"), ("x", "y" * 5000)):
        redis_server.cmd("XADD", "mailguard:log", "*", *fields)
    # a ban wider than the accepted floor, through the script
    ban_from_elsewhere(redis_server, "0.0.0.0/1", exp)
    ban_from_elsewhere(redis_server, "203.0.113.51", exp)
    assert wait_for(lambda: status(srv, "203.0.113.51") == 403, within=SYNC + SLACK)
    time.sleep(SYNC + 0.2)
    assert status(srv, "203.0.113.50") == 200
    assert status(srv, "203.0.113.52") == 200
    assert status(srv, "1.2.3.4") == 200
    assert srv.alive()


def test_two_servers_sharing_one_redis_enforce_each_others_bans(redis_server, httpd_factory):
    a = server(httpd_factory, redis_server, name="server-a")
    b = server(httpd_factory, redis_server, name="server-b", sync_interval="1m")
    wait_ready(b, redis_server)
    me = "127.0.5.2"
    for _ in range(2):
        assert a.basic_login_fail(src=me).status == 401
    t0 = time.monotonic()
    took = wait_for(lambda: b.get("/static.txt", src=me).status == 403, within=1.0, step=0.02)
    assert took is not None, "server B did not enforce A's ban within 1 s"
    assert time.monotonic() - t0 <= 1.2
    assert a.get("/static.txt", src=me).status == 403
    assert b.get("/static.txt", src="127.0.5.3").status == 200


def test_bans_wider_than_the_prefix_floor_are_refused_and_the_floor_is_configurable(
        redis_server, httpd_factory):
    strict = server(httpd_factory, redis_server, name="floor-default")
    wide = server(httpd_factory, redis_server, name="floor-8",
                  server_conf="MailGuardPrefixFloor 8 32\n")
    wait_ready(strict, redis_server)
    wait_ready(wide, redis_server)
    ban_from_elsewhere(redis_server, "198.18.0.0/15", now() + 3600)
    ban_from_elsewhere(redis_server, "203.0.113.0/24", now() + 3600)
    assert wait_for(lambda: status(strict, "203.0.113.77") == 403, within=SYNC + SLACK)
    assert wait_for(lambda: status(wide, "198.19.1.1") == 403, within=SYNC + SLACK)
    assert status(strict, "198.19.1.1") == 200         # /15 is wider than /16
    assert len([l for l in open(strict.errlog) if "MG0069" in l]) == 1
