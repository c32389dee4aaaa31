"""The proxy is never the client (issue 9, item 5).

mod_remoteip keeps the peer's own address when the forwarding header from a
trusted proxy holds nothing it can use (garbage, an empty value, a private
address through an external proxy).  Such a failure is counted as
"unattributable" on the status page and never recorded, so a garbage
X-Forwarded-For cannot get the proxy, and everyone behind it, banned.  A
client that sends the header itself, from an address mod_remoteip does not
trust, is still counted by that address.

The servers trust 127.0.0.1 (RemoteIPHeader X-Forwarded-For,
RemoteIPInternalProxy 127.0.0.1 in the main server, as in every test); one
test lists the proxy in its <VirtualHost> instead.
"""
import time

import pytest

from support.httpd import httpd_factory, need_module  # noqa: F401  (fixtures)
from support.mailguard import bans

pytestmark = pytest.mark.usefixtures("need_module")

SETTLE = 0.2
PROXY = "127.0.0.1"
VHOST = """
    MailGuardEngine On
    MailGuardWatch roundcube
    MailGuardMaxRetry 2
    MailGuardBanTime 1h
    <Location "/mailguard-status">
        SetHandler mailguard-status
    </Location>
"""


def counters(srv):
    out = {}
    for line in srv.get("/mailguard-status", src="127.0.0.250").body.splitlines():
        k, _, v = line.partition(": ")
        out[k] = v
    return out


def fail(srv, n, **kw):
    for _ in range(n):
        assert srv.basic_login_fail(**kw).status == 401
    time.sleep(SETTLE)


@pytest.mark.parametrize("header", ["garbage", ",", "203.0.113.5, not-an-address",
                                    "203.0.113.5:8080x"])
def test_unusable_forwarded_address_from_trusted_proxy_never_counts_against_the_proxy(
        redis_server, httpd_factory, header):
    srv = httpd_factory(redis=redis_server.url, vhost_conf=VHOST, name="unattributable")
    before = counters(srv)
    fail(srv, 4, src=PROXY, xff=header)
    after = counters(srv)
    assert int(after["FailuresUnattributable"]) - int(before["FailuresUnattributable"]) == 4
    assert int(after["FailuresRecorded"]) == int(before["FailuresRecorded"])
    assert bans(redis_server) == {}
    # The proxy still serves everyone behind it.
    assert srv.get("/static.txt", src=PROXY).status == 200
    assert srv.get("/static.txt", src=PROXY, xff="203.0.113.6").status == 200


def test_header_sent_directly_by_an_untrusted_client_counts_against_that_client(
        redis_server, httpd_factory):
    srv = httpd_factory(redis=redis_server.url, vhost_conf=VHOST, name="direct")
    me = "127.0.0.77"
    fail(srv, 2, src=me, xff="garbage")
    assert set(bans(redis_server)) == {me}
    assert int(counters(srv)["FailuresUnattributable"]) == 0


def test_usable_forwarded_address_is_counted_as_before(redis_server, httpd_factory):
    srv = httpd_factory(redis=redis_server.url, vhost_conf=VHOST, name="usable")
    fail(srv, 2, src=PROXY, xff="garbage, 203.0.113.7")
    assert set(bans(redis_server)) == {"203.0.113.7"}


def test_proxies_listed_in_the_virtual_host_are_read_there(redis_server, httpd_factory):
    vhost = VHOST + """
    RemoteIPHeader X-Real-Client
    RemoteIPInternalProxy 127.0.0.88
"""
    srv = httpd_factory(redis=redis_server.url, vhost_conf=vhost, name="vhost-proxy")
    # 127.0.0.88 is this vhost's proxy, for its own header.
    fail(srv, 3, src="127.0.0.88", headers=["X-Real-Client: junk"])
    assert bans(redis_server) == {}
    assert int(counters(srv)["FailuresUnattributable"]) == 3
    # The main server's proxy is not trusted here: it is a client.
    fail(srv, 2, src=PROXY, headers=["X-Real-Client: junk"])
    assert set(bans(redis_server)) == {PROXY}
