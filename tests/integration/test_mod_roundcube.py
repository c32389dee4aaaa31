"""mod_mailguard's own behaviour with MailGuardWatch roundcube (prefork +
mod_php, the index.php stand-in).

These tests are about the module (when it bans, whom, what it logs and
announces, that a denied request never reaches PHP), so they use the
stand-in, whose run log proves PHP did not run, and take seconds.  What
Roundcube itself answers, with and without the plugin, is tested against
the real application in test_webmail_roundcube.py.  Each test uses its own
client address (127.0.0.N).
"""
import time

import pytest

from support.httpd import httpd_factory, need_module  # noqa: F401  (fixtures)
from support.mailguard import Events, bans, now

pytestmark = pytest.mark.usefixtures("need_module")

VHOST = """
    MailGuardEngine On
    MailGuardWatch roundcube
    MailGuardMaxRetry 3
    MailGuardFindTime 10m
    MailGuardBanTime 1h
"""

# The ban is made in log_transaction, after the response has been sent:
# the client may see the 401 a moment before the ban exists.
SETTLE = 0.2


def roundcube(httpd_factory, redis_server, vhost=VHOST, **kw):
    return httpd_factory(mpm="prefork", php=True, redis=redis_server.url,
                         vhost_conf=vhost, name="roundcube", **kw)


def test_roundcube_user_who_mistypes_below_maxretry_is_not_banned(redis_server, httpd_factory):
    srv = roundcube(httpd_factory, redis_server)
    me = "127.0.0.2"
    for _ in range(2):
        assert srv.roundcube_login("wrong", src=me).status == 401
    time.sleep(SETTLE)
    assert srv.get("/", src=me).status == 200
    assert srv.roundcube_login("right", src=me).status in (302, 303)
    assert me not in bans(redis_server)


def test_roundcube_maxretry_th_failure_is_answered_401_and_bans(redis_server, httpd_factory):
    srv = roundcube(httpd_factory, redis_server)
    me = "127.0.0.3"
    statuses = [srv.roundcube_login("wrong", src=me).status for _ in range(3)]
    # The failure that reaches MaxRetry already ran: its 401 is Roundcube's.
    assert statuses == [401, 401, 401]
    assert len(srv.php_runs()) == 3
    time.sleep(SETTLE)
    t = now()
    assert srv.get("/", src=me).status == 403
    assert srv.roundcube_login("right", src=me).status == 403
    assert len(srv.php_runs()) == 3, "a denied request reached PHP"
    score = bans(redis_server).get(me)
    assert score is not None, "the ban is not in Redis"
    assert t + 3600 - 10 <= score <= t + 3600 + 10
    # Only this client is banned.
    assert srv.get("/", src="127.0.0.4").status == 200


def test_roundcube_denied_request_is_answered_before_php_runs(redis_server, httpd_factory):
    srv = roundcube(httpd_factory, redis_server)
    me = "127.0.0.5"
    for _ in range(3):
        srv.roundcube_login("wrong", src=me)
    time.sleep(SETTLE)
    before = srv.php_runs()
    for path in ("/", "/index.php", "/?_task=mail", "/src/redirect.php", "/static.txt"):
        assert srv.get(path, src=me).status == 403, path
    assert srv.roundcube_login("right", src=me).status == 403
    assert srv.php_runs() == before


def test_roundcube_successful_login_is_not_counted(redis_server, httpd_factory):
    srv = roundcube(httpd_factory, redis_server)
    me = "127.0.0.6"
    assert srv.roundcube_login("wrong", src=me).status == 401
    for http10 in (False, True, False, True):
        r = srv.roundcube_login("right", src=me, http10=http10)
        assert r.status in (302, 303)
        assert "_task=mail" in r.location
    assert srv.roundcube_login("wrong", src=me).status == 401
    time.sleep(SETTLE)
    assert srv.get("/", src=me).status == 200
    assert me not in bans(redis_server)
    # Successes did not reset the count either: the third failure bans.
    assert srv.roundcube_login("wrong", src=me).status == 401
    time.sleep(SETTLE)
    assert srv.get("/", src=me).status == 403


def test_roundcube_login_page_get_answered_401_is_not_counted(redis_server, httpd_factory):
    srv = roundcube(httpd_factory, redis_server)
    me = "127.0.0.7"
    # Roundcube 1.4.0 answered every render of the login page with 401.
    for _ in range(6):
        assert srv.get("/?_task=login&_err=401", src=me).status == 401
    time.sleep(SETTLE)
    assert srv.get("/", src=me).status == 200
    assert me not in bans(redis_server)


def test_roundcube_post_answered_401_to_another_task_is_counted(redis_server, httpd_factory):
    srv = roundcube(httpd_factory, redis_server)
    me = "127.0.0.8"
    # Roundcube answers 401 only from its login branch, which any POST can
    # reach whatever the query's _task (the body wins; the task is forced
    # to login for anyone not logged in): the query cannot clear a 401.
    assert srv.post("/?_task=mail", "_task=login&_user=bob&_pass=x", src=me).status == 401
    assert srv.post("/?_task=mail&_action=send", "_to=x", src=me).status == 401
    assert srv.post("/?_task=settings", "_action=login", src=me).status == 401
    time.sleep(SETTLE)
    assert srv.get("/", src=me).status == 403
    assert me in bans(redis_server)


def test_roundcube_failures_are_counted_per_client_address(redis_server, httpd_factory):
    srv = roundcube(httpd_factory, redis_server)
    attacker, neighbour = "127.0.0.10", "127.0.0.11"
    for _ in range(2):
        assert srv.roundcube_login("wrong", src=attacker).status == 401
        assert srv.roundcube_login("wrong", src=neighbour).status == 401
    assert srv.roundcube_login("wrong", src=attacker).status == 401
    time.sleep(SETTLE)
    assert srv.get("/", src=attacker).status == 403
    assert srv.get("/", src=neighbour).status == 200
    assert srv.roundcube_login("right", src=neighbour).status in (302, 303)
    assert set(bans(redis_server)) == {attacker}


def test_roundcube_ban_is_announced_with_its_jail_and_expiry(redis_server, httpd_factory):
    srv = roundcube(httpd_factory, redis_server)
    me = "127.0.0.12"
    ev = Events(redis_server)
    try:
        t = now()
        for _ in range(3):
            srv.roundcube_login("wrong", src=me)
        msgs = ev.collect(timeout=1.0)
    finally:
        ev.close()
    ours = [m.split() for m in msgs if m.split()[:2] == ["ban", me]]
    assert len(ours) == 1, msgs
    _, _, expiry, jail = ours[0]
    assert jail == "webmail"
    assert t + 3600 - 10 <= float(expiry) <= t + 3600 + 10


def test_roundcube_ban_is_logged_once_and_denials_are_not_logged(redis_server, httpd_factory):
    srv = roundcube(httpd_factory, redis_server)
    me = "127.0.0.13"
    for _ in range(3):
        srv.roundcube_login("wrong", src=me)
    time.sleep(SETTLE)
    mark = srv.mark()
    for _ in range(10):
        assert srv.get("/", src=me).status == 403
    time.sleep(SETTLE)
    assert [l for l in srv.errlog_lines(since=mark) if me in l] == []
    ban_lines = [l for l in srv.errlog_lines() if me in l]
    assert len(ban_lines) == 1, ban_lines
    assert ":notice]" in ban_lines[0]
    assert "webmail" in ban_lines[0]
