"""Per-<Location> settings merge field by field with the virtual host's.

The Roundcube stand-in is served at /, /strict/, /jail2/ and /open/ (copies
of the same pages), each with its own MailGuard settings.
"""
import time

import pytest

from support.httpd import httpd_factory, need_module  # noqa: F401  (fixtures)
from support.mailguard import Events, bans, now

pytestmark = pytest.mark.usefixtures("need_module")

SETTLE = 0.2

VHOST = """
    MailGuardEngine On
    MailGuardWatch roundcube
    MailGuardJail rc
    MailGuardMaxRetry 5
    MailGuardBanTime 1h
    <Location "/strict/">
        MailGuardMaxRetry 1
    </Location>
    <Location "/jail2/">
        MailGuardJail rc-strict
        MailGuardMaxRetry 2
        MailGuardBanTime 2h
    </Location>
    <Location "/open/">
        MailGuardEngine Off
    </Location>
"""


@pytest.fixture
def srv(redis_server, httpd_factory):
    return httpd_factory(mpm="prefork", php=True, redis=redis_server.url,
                         vhost_conf=VHOST, copies=("strict", "jail2", "open"),
                         name="locations")


def ban_events(redis_server, action):
    ev = Events(redis_server)
    try:
        action()
        return [m.split() for m in ev.collect(timeout=1.0) if m.startswith("ban ")]
    finally:
        ev.close()


def test_location_maxretry_applies_there_and_other_settings_are_inherited(redis_server, srv):
    me = "127.0.1.1"
    t = now()
    events = ban_events(redis_server,
                        lambda: srv.roundcube_login("wrong", prefix="/strict", src=me))
    # One failure bans at /strict/ (MaxRetry 1) ...
    assert [e[1] for e in events] == [me]
    # ... into the vhost's jail, for the vhost's BanTime.
    assert events[0][3] == "rc"
    assert t + 3600 - 10 <= float(events[0][2]) <= t + 3600 + 10
    assert srv.get("/", src=me).status == 403


def test_vhost_maxretry_applies_outside_the_location(redis_server, srv):
    me = "127.0.1.2"
    for _ in range(4):
        assert srv.roundcube_login("wrong", src=me).status == 401
    time.sleep(SETTLE)
    assert srv.get("/", src=me).status == 200
    assert srv.roundcube_login("wrong", src=me).status == 401
    time.sleep(SETTLE)
    assert srv.get("/", src=me).status == 403


def test_location_with_its_own_jail_counts_apart_and_bans_into_that_jail(redis_server, srv):
    me = "127.0.1.3"
    assert srv.roundcube_login("wrong", prefix="/jail2", src=me).status == 401
    # Failures in jail "rc" do not add to jail "rc-strict" (and 4 < 5).
    for _ in range(4):
        assert srv.roundcube_login("wrong", src=me).status == 401
    time.sleep(SETTLE)
    assert srv.get("/", src=me).status == 200
    t = now()
    events = ban_events(redis_server,
                        lambda: srv.roundcube_login("wrong", prefix="/jail2", src=me))
    assert [(e[1], e[3]) for e in events] == [(me, "rc-strict")]
    assert t + 7200 - 10 <= float(events[0][2]) <= t + 7200 + 10
    assert t + 7200 - 10 <= bans(redis_server)[me] <= t + 7200 + 10


def test_location_with_engine_off_is_neither_counted_nor_denied(redis_server, srv):
    me = "127.0.1.4"
    for _ in range(8):
        assert srv.roundcube_login("wrong", prefix="/open", src=me).status == 401
    time.sleep(SETTLE)
    assert srv.get("/", src=me).status == 200
    assert me not in bans(redis_server)
    # Banned elsewhere on the site, the client still reaches /open/.
    srv.roundcube_login("wrong", prefix="/strict", src=me)
    time.sleep(SETTLE)
    assert srv.get("/", src=me).status == 403
    runs = len(srv.php_runs())
    assert srv.get("/open/", src=me).status == 200
    assert srv.roundcube_login("right", prefix="/open", src=me).status in (302, 303)
    assert len(srv.php_runs()) == runs + 2
