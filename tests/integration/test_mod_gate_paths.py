"""Every way httpd could let a banned client past the deny, and every way a
login could reach the webmail without being watched (issue 8).

The deny runs in post_perdir_config: for the initial request, internal
redirects and subrequests, before every access, authentication and
authorization hook and before any handler.  These tests prove it against
the configurations that skip or precede the access hooks: `Satisfy Any`
(mod_access_compat), `Require all granted`, HTTP Basic auth, an internal
redirect (mod_rewrite) into the guarded scope, a subrequest (mod_include),
and an ErrorDocument that points into it.  The PHP stand-ins log every run,
so "PHP never ran" is checked, not assumed.
"""
import time

import pytest

from support.httpd import BASIC_USER, GOOD_PASSWORD, httpd_factory, need_module  # noqa: F401
from support.mailguard import ban_from_elsewhere, bans, now

pytestmark = pytest.mark.usefixtures("need_module")

SETTLE = 0.3
LOGIN = "_task=login&_action=login&_user=bob&_pass=%s"
BANNED = "127.0.9.1"

VHOST = r"""
    <Location "/guarded/">
        MailGuardEngine On
        MailGuardWatch roundcube
        MailGuardMaxRetry 1
        MailGuardBanTime 1h
    </Location>
    <Location "/sany/">
        MailGuardEngine On
        # mod_access_compat: no Allow/Deny, so its access checker says OK
        # and httpd skips every access_checker_ex hook.
        Satisfy Any
        AuthType Basic
        AuthName "sany"
        AuthBasicProvider file
        AuthUserFile "{root}/htpasswd"
        Require valid-user
    </Location>
    <Location "/granted/">
        MailGuardEngine On
        Require all granted
    </Location>
    <Location "/basic/">
        MailGuardEngine On
        AuthType Basic
        AuthName "basic"
        AuthBasicProvider file
        AuthUserFile "{root}/htpasswd"
        Require valid-user
    </Location>
    <Location "/open/">
        ErrorDocument 404 /guarded/index.php
    </Location>
    <Directory "{docroot}/open">
        Options FollowSymLinks Includes
        AddOutputFilter INCLUDES .shtml
        RewriteEngine On
        RewriteRule ^door$ /guarded/index.php?_task=login [L]
    </Directory>
    RewriteEngine On
    RewriteRule ^/door2$ /guarded/index.php?_task=login [PT]
    <Location "/other/">
        MailGuardEngine On
        MailGuardFailure POST ^/other/login\.php$ 422
        MailGuardMaxRetry 1
    </Location>
    <Location "/login/">
        MailGuardEngine On
        MailGuardFailure POST ^/login/ 401
        MailGuardMaxRetry 1
        ErrorDocument 401 /static.txt
    </Location>
"""


@pytest.fixture
def srv(redis_server, httpd_factory):
    s = httpd_factory(mpm="prefork", php=True, redis=redis_server.url, start=False,
                      copies=("guarded", "sany", "granted", "basic", "open"),
                      extra_modules=("access_compat_module", "rewrite_module",
                                     "include_module"),
                      name="gate-paths",
                      # mod_include logs the denied subrequest at error level.
                      allow=[r'unable to include "/guarded/index\.php".*returned 403'])
    s.vhost_conf = VHOST.format(root=s.root, docroot=s.docroot)
    s.write_conf()
    with open(s.docroot + "/open/page.shtml", "w") as f:
        f.write('before <!--#include virtual="/guarded/index.php" --> after\n')
    return s.start()


def banned(srv, redis_server):
    ban_from_elsewhere(redis_server, BANNED, now() + 3600)
    assert srv.wait_status("/guarded/", 403, within=5, src=BANNED) is not None
    return len(srv.php_runs())


def test_deny_holds_under_satisfy_any(srv, redis_server):
    runs = banned(srv, redis_server)
    auth = "Authorization: Basic " + __import__("base64").b64encode(
        ("%s:%s" % (BASIC_USER, GOOD_PASSWORD)).encode()).decode()
    assert srv.get("/sany/index.php", src=BANNED).status == 403
    assert srv.get("/sany/index.php", src=BANNED, headers=[auth]).status == 403
    assert srv.roundcube_login("right", prefix="/sany", src=BANNED).status == 403
    assert len(srv.php_runs()) == runs
    # An unbanned client gets through the same scope.
    assert srv.get("/sany/index.php", src="127.0.9.2").status == 200


def test_deny_holds_under_require_all_granted(srv, redis_server):
    runs = banned(srv, redis_server)
    assert srv.get("/granted/index.php", src=BANNED).status == 403
    assert srv.roundcube_login("right", prefix="/granted", src=BANNED).status == 403
    assert len(srv.php_runs()) == runs
    assert srv.get("/granted/index.php", src="127.0.9.2").status == 200


def test_deny_comes_before_basic_auth(srv, redis_server):
    """A banned client cannot test Basic-auth passwords: right or wrong, it
    gets the deny, never 200 or 401."""
    runs = banned(srv, redis_server)
    good = "Authorization: Basic " + __import__("base64").b64encode(
        ("%s:%s" % (BASIC_USER, GOOD_PASSWORD)).encode()).decode()
    bad = "Authorization: Basic " + __import__("base64").b64encode(
        ("%s:wrong" % BASIC_USER).encode()).decode()
    assert srv.get("/basic/index.php", src=BANNED, headers=[good]).status == 403
    assert srv.get("/basic/index.php", src=BANNED, headers=[bad]).status == 403
    assert srv.get("/basic/index.php", src=BANNED).status == 403
    assert len(srv.php_runs()) == runs
    assert srv.get("/basic/index.php", src="127.0.9.2").status == 401
    assert srv.get("/basic/index.php", src="127.0.9.2", headers=[good]).status == 200


def test_deny_holds_for_an_internal_redirect_into_the_guarded_scope(srv, redis_server):
    runs = banned(srv, redis_server)
    assert srv.post("/open/door", LOGIN % "right", src=BANNED).status == 403
    assert srv.get("/door2", src=BANNED).status == 403
    assert len(srv.php_runs()) == runs
    assert srv.get("/open/door", src="127.0.9.2").status == 200


def test_deny_holds_for_a_subrequest_into_the_guarded_scope(srv, redis_server):
    runs = banned(srv, redis_server)
    r = srv.get("/open/page.shtml", src=BANNED)
    # The unguarded page is served; the guarded part of it is not.
    assert r.status == 200
    assert "before" in r.body and "Roundcube" not in r.body
    assert len(srv.php_runs()) == runs
    r = srv.get("/open/page.shtml", src="127.0.9.2")
    assert "Roundcube" in r.body


def test_deny_holds_for_an_error_document_in_the_guarded_scope(srv, redis_server):
    runs = banned(srv, redis_server)
    r = srv.get("/open/missing", src=BANNED)
    assert r.status == 404
    assert "Roundcube" not in r.body
    assert len(srv.php_runs()) == runs
    # For anyone else the ErrorDocument runs.
    r = srv.get("/open/missing", src="127.0.9.2")
    assert "Roundcube" in r.body


def test_internal_redirect_into_the_guarded_scope_is_counted(srv, redis_server):
    me = "127.0.9.3"
    # A per-directory RewriteRule: an internal redirect from /open/, where
    # nothing is watched, into /guarded/ (MaxRetry 1 there).
    assert srv.post("/open/door", LOGIN % "wrong", src=me).status == 401
    time.sleep(SETTLE)
    assert me in bans(redis_server)
    assert srv.get("/guarded/", src=me).status == 403


def test_pass_through_rewrite_into_the_guarded_scope_is_counted(srv, redis_server):
    me = "127.0.9.4"
    assert srv.post("/door2", LOGIN % "wrong", src=me).status == 401
    time.sleep(SETTLE)
    assert me in bans(redis_server)


def test_failure_rule_matches_the_path_without_path_info(srv, redis_server):
    me = "127.0.9.5"
    assert srv.post("/other/login.php/x", "user=bob&pass=wrong", src=me).status == 422
    time.sleep(SETTLE)
    assert me in bans(redis_server)


def test_error_document_does_not_hide_a_failed_post(srv, redis_server):
    """Basic auth refuses the POST with 401 and an ErrorDocument serves a
    page (as a GET): the failure is still the POST's."""
    me = "127.0.9.6"
    r = srv.post("/login/", "user=bob&pass=wrong", src=me)
    assert r.status == 401
    assert r.body.strip() == "static"
    time.sleep(SETTLE)
    assert me in bans(redis_server)
