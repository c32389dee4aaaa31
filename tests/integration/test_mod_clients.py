"""Which address is counted and banned (event MPM, no PHP).

The login stand-in is /login/ behind HTTP Basic auth: a Roundcube-shaped
POST ./?_task=login without credentials gets 401.  mod_remoteip trusts
X-Forwarded-For from 127.0.0.1 only (RemoteIPInternalProxy 127.0.0.1).
Forwarded client addresses are documentation addresses.
"""
import time

import pytest

from support.httpd import httpd_factory, need_module  # noqa: F401  (fixtures)
from support.mailguard import bans, now, wait_for

pytestmark = pytest.mark.usefixtures("need_module")

SETTLE = 0.2
PROXY = "127.0.0.1"


def vhost(extra=""):
    return """
    MailGuardEngine On
    MailGuardWatch roundcube
    MailGuardMaxRetry 2
    MailGuardBanTime 1h
%s
""" % extra


def fail(srv, n, **kw):
    for _ in range(n):
        assert srv.basic_login_fail(**kw).status == 401
    time.sleep(SETTLE)


def test_x_forwarded_for_from_trusted_proxy_is_honoured(redis_server, httpd_factory):
    srv = httpd_factory(redis=redis_server.url, vhost_conf=vhost(), name="proxy")
    client = "203.0.113.10"
    fail(srv, 2, src=PROXY, xff=client)
    assert set(bans(redis_server)) == {client}
    assert srv.get("/static.txt", src=PROXY, xff=client).status == 403
    assert srv.get("/static.txt", src=PROXY, xff="203.0.113.11").status == 200
    # The proxy itself is not banned: its other clients are served.
    assert srv.get("/static.txt", src=PROXY).status == 200


def test_spoofed_x_forwarded_for_from_untrusted_peer_is_refused(redis_server, httpd_factory):
    srv = httpd_factory(redis=redis_server.url, vhost_conf=vhost(), name="spoof")
    peer, spoofed = "127.0.0.9", "198.51.100.20"
    fail(srv, 2, src=peer, xff=spoofed)
    # The ban hits the real peer, never the address it claimed.
    assert set(bans(redis_server)) == {peer}
    assert srv.get("/static.txt", src=peer).status == 403
    assert srv.get("/static.txt", src=peer, xff="198.51.100.99").status == 403
    assert srv.get("/static.txt", src=PROXY, xff=spoofed).status == 200


def test_distinct_source_addresses_are_distinct_clients(redis_server, httpd_factory):
    srv = httpd_factory(redis=redis_server.url, vhost_conf=vhost(), name="sources")
    fail(srv, 1, src="127.0.3.1")
    fail(srv, 1, src="127.0.3.2")
    assert bans(redis_server) == {}
    fail(srv, 1, src="127.0.3.2")
    assert set(bans(redis_server)) == {"127.0.3.2"}
    assert srv.get("/static.txt", src="127.0.3.1").status == 200
    assert srv.get("/static.txt", src="127.0.3.2").status == 403


def test_ipv6_clients_in_one_64_are_counted_and_banned_together(redis_server, httpd_factory):
    srv = httpd_factory(redis=redis_server.url, vhost_conf=vhost(), name="v6")
    fail(srv, 1, src=PROXY, xff="2001:db8:1:2::5")
    fail(srv, 1, src=PROXY, xff="2001:db8:1:2::6")
    assert set(bans(redis_server)) == {"2001:db8:1:2::/64"}
    assert srv.get("/static.txt", src=PROXY, xff="2001:db8:1:2::5").status == 403
    assert srv.get("/static.txt", src=PROXY, xff="2001:db8:1:2:ffff::1").status == 403
    assert srv.get("/static.txt", src=PROXY, xff="2001:db8:1:3::5").status == 200


def test_ipv6_prefix_128_bans_single_hosts(redis_server, httpd_factory):
    srv = httpd_factory(redis=redis_server.url, vhost_conf=vhost("MailGuardIPv6Prefix 128"),
                        name="v6host")
    fail(srv, 1, src=PROXY, xff="2001:db8:1:2::5")
    fail(srv, 1, src=PROXY, xff="2001:db8:1:2::6")
    assert bans(redis_server) == {}
    fail(srv, 1, src=PROXY, xff="2001:db8:1:2::6")
    assert set(bans(redis_server)) == {"2001:db8:1:2::6"}
    assert srv.get("/static.txt", src=PROXY, xff="2001:db8:1:2::6").status == 403
    assert srv.get("/static.txt", src=PROXY, xff="2001:db8:1:2::5").status == 200


def test_direct_ipv6_client_is_banned_by_its_prefix(redis_server, httpd_factory):
    srv = httpd_factory(redis=redis_server.url, vhost_conf=vhost(), name="v6direct")
    fail(srv, 2, v6=True, src="::1")
    assert set(bans(redis_server)) == {"::/64"}
    assert srv.get("/static.txt", v6=True).status == 403
    assert srv.get("/static.txt").status == 200


def test_ipv4_mapped_forwarded_address_counts_as_ipv4(redis_server, httpd_factory):
    srv = httpd_factory(redis=redis_server.url, vhost_conf=vhost(), name="mapped")
    fail(srv, 1, src=PROXY, xff="::ffff:203.0.113.30")
    fail(srv, 1, src=PROXY, xff="203.0.113.30")
    assert set(bans(redis_server)) == {"203.0.113.30"}
    assert srv.get("/static.txt", src=PROXY, xff="::ffff:203.0.113.30").status == 403


def test_ignore_list_addresses_and_ranges_are_never_counted(redis_server, httpd_factory):
    srv = httpd_factory(
        redis=redis_server.url, name="ignore",
        vhost_conf=vhost("MailGuardIgnoreIP 127.0.4.64/28 198.51.100.7 2001:db8:ffff::/48"))
    fail(srv, 4, src="127.0.4.70")
    fail(srv, 4, src=PROXY, xff="198.51.100.7")
    fail(srv, 4, src=PROXY, xff="2001:db8:ffff:1::9")
    assert bans(redis_server) == {}
    assert srv.get("/static.txt", src="127.0.4.70").status == 200
    # Just outside each entry: counted as usual.
    fail(srv, 2, src="127.0.4.80")
    fail(srv, 2, src=PROXY, xff="198.51.100.8")
    fail(srv, 2, src=PROXY, xff="2001:db8:fffe::9")
    assert set(bans(redis_server)) == {"127.0.4.80", "198.51.100.8", "2001:db8:fffe::/64"}


def test_deny_status_is_configurable(redis_server, httpd_factory):
    srv = httpd_factory(redis=redis_server.url, vhost_conf=vhost("MailGuardDenyStatus 429"),
                        name="denystatus")
    fail(srv, 2, src="127.0.3.5")
    assert srv.get("/static.txt", src="127.0.3.5").status == 429
    assert srv.basic_login_fail(src="127.0.3.5").status == 429


def test_deny_comes_before_authentication(redis_server, httpd_factory):
    srv = httpd_factory(redis=redis_server.url, vhost_conf=vhost(), name="beforeauth")
    fail(srv, 2, src="127.0.3.6")
    # The right Basic credentials do not get a banned client past the deny.
    r = srv.post("/login/?_task=login", "x=1", src="127.0.3.6",
                 headers=("Authorization: Basic YWxpY2U6cmlnaHQ=",))
    assert r.status == 403


def test_redis_none_works_standalone(httpd_factory):
    srv = httpd_factory(redis="none", name="standalone",
                        vhost_conf=vhost().replace("MailGuardBanTime 1h", "MailGuardBanTime 3s"))
    me = "127.0.3.7"
    fail(srv, 1, src=me)
    t_ban = time.monotonic()
    fail(srv, 1, src=me)
    # Every process sees the ban (two children): ask several times.
    assert [srv.get("/static.txt", src=me).status for _ in range(8)] == [403] * 8
    assert srv.get("/static.txt", src="127.0.3.8").status == 200
    # ... and it expires after MailGuardBanTime.
    waited = wait_for(lambda: srv.get("/static.txt", src=me).status == 200, within=6)
    assert waited is not None, "the 3s ban never expired"
    # Expiries are whole Unix seconds: a 3s ban lasts more than 2 s.
    assert time.monotonic() - t_ban >= 1.9


def test_key_prefix_names_every_key(redis_server, httpd_factory):
    srv = httpd_factory(redis=redis_server.url, vhost_conf=vhost(), name="prefix",
                        server_conf="MailGuardKeyPrefix tenant1:")
    fail(srv, 2, src="127.0.3.9")
    assert set(bans(redis_server, prefix="tenant1:")) == {"127.0.3.9"}
    assert bans(redis_server) == {}
    keys = redis_server.cmd("KEYS", "*")
    assert keys and all(k.startswith("tenant1:") for k in keys), keys
    # A ban written under another prefix is not ours.
    redis_server.cmd("ZADD", "mailguard:bans", int(now()) + 3600, "127.0.3.10")
    redis_server.cmd("PUBLISH", "mailguard:events", "ban 127.0.3.10 %d imap" % (int(now()) + 3600))
    time.sleep(1.5)
    assert srv.get("/static.txt", src="127.0.3.10").status == 200
