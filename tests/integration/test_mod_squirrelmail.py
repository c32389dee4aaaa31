"""mod_mailguard's own behaviour with MailGuardWatch squirrelmail and with
custom MailGuardFailure rules (prefork + mod_php stand-ins, whose run log
proves a denied request never reached PHP; the real SquirrelMail 1.4.23 is
tested in test_webmail_squirrelmail.py).

SquirrelMail answers a failed POST /src/redirect.php with a 200 error page
(`<!-- logout_error -->`) and a success with a redirect to webmail.php.
"""
import time

import pytest

from support.httpd import httpd_factory, need_module  # noqa: F401  (fixtures)
from support.mailguard import bans

pytestmark = pytest.mark.usefixtures("need_module")

SETTLE = 0.2

SQUIRRELMAIL = """
    MailGuardEngine On
    MailGuardWatch squirrelmail
    MailGuardMaxRetry 2
    MailGuardBanTime 1h
"""

CUSTOM = r"""
    MailGuardEngine On
    MailGuardFailure POST ^/other/login\.php$ 422,429
    MailGuardMaxRetry 2
    MailGuardBanTime 1h
"""


def server(httpd_factory, redis_server, vhost, **kw):
    return httpd_factory(mpm="prefork", php=True, redis=redis_server.url,
                         vhost_conf=vhost, **kw)


def test_squirrelmail_wrong_password_page_with_status_200_is_counted(redis_server, httpd_factory):
    srv = server(httpd_factory, redis_server, SQUIRRELMAIL, name="squirrelmail")
    me = "127.0.2.1"
    for _ in range(2):
        r = srv.squirrelmail_login("wrong", src=me)
        assert r.status == 200
        assert "<!-- logout_error -->" in r.body
    time.sleep(SETTLE)
    runs = len(srv.php_runs())
    assert srv.squirrelmail_login("right", src=me).status == 403
    assert srv.get("/src/webmail.php", src=me).status == 403
    assert len(srv.php_runs()) == runs
    assert me in bans(redis_server)


def test_squirrelmail_successful_login_redirect_is_not_counted(redis_server, httpd_factory):
    srv = server(httpd_factory, redis_server, SQUIRRELMAIL, name="squirrelmail")
    me = "127.0.2.2"
    assert srv.squirrelmail_login("wrong", src=me).status == 200
    for http10 in (False, True, False, True):
        r = srv.squirrelmail_login("right", src=me, http10=http10)
        assert r.status in (302, 303)
        assert r.location.endswith("/src/webmail.php")
    time.sleep(SETTLE)
    assert srv.get("/src/webmail.php", src=me).status == 200
    assert me not in bans(redis_server)


def test_squirrelmail_get_and_other_pages_are_not_counted(redis_server, httpd_factory):
    srv = server(httpd_factory, redis_server, SQUIRRELMAIL, name="squirrelmail")
    me = "127.0.2.3"
    for _ in range(3):
        # A GET of redirect.php shows the same 200 error page: not a login.
        assert srv.get("/src/redirect.php", src=me).status == 200
        # Other pages answering 200 to a POST are not logins either.
        assert srv.post("/src/webmail.php", "x=1", src=me).status == 200
        # Under MailGuardWatch squirrelmail, Roundcube's 401 means nothing.
        assert srv.roundcube_login("wrong", src=me).status == 401
    time.sleep(SETTLE)
    assert srv.get("/src/webmail.php", src=me).status == 200
    assert me not in bans(redis_server)


def test_custom_failure_rule_counts_matching_method_path_and_status(redis_server, httpd_factory):
    srv = server(httpd_factory, redis_server, CUSTOM, name="custom")
    me = "127.0.2.4"
    for _ in range(2):
        assert srv.post("/other/login.php", "user=bob&pass=wrong", src=me).status == 422
    time.sleep(SETTLE)
    assert srv.get("/other/login.php", src=me).status == 403
    assert me in bans(redis_server)


def test_custom_failure_rule_ignores_other_methods_paths_and_statuses(redis_server, httpd_factory):
    srv = server(httpd_factory, redis_server, CUSTOM, name="custom", copies=("x",))
    me = "127.0.2.5"
    for _ in range(3):
        # Same status, but a GET.
        assert srv.get("/other/login.php?status=1", src=me).status == 422
        # Same method and status, but the path does not match the anchored regex.
        assert srv.post("/x/other/login.php", "user=bob&pass=wrong", src=me).status == 422
        # Same method and path, but a success status.
        assert srv.post("/other/login.php", "user=bob&pass=right", src=me).status in (302, 303)
        # Built-in watches are not on here: a Roundcube 401 is not counted.
        assert srv.roundcube_login("wrong", src=me).status == 401
    time.sleep(SETTLE)
    assert srv.get("/other/login.php", src=me).status == 200
    assert me not in bans(redis_server)
