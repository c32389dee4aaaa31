"""mod_mailguard in front of the real SquirrelMail 1.4.23 (from
../shared/thirdparty) and a real Dovecot, with and without the project's
SquirrelMail plugin (mod_php).

What is counted: a login to src/redirect.php (a POST, or any method whose
query carries login_username) answered 200; 302 is a success.  With the
plugin, a rejected password keeps its 200 and what is not a password check
moves out of it: IMAP unreachable answers 503, no user name 400.

One Dovecot, one Redis and two Apache servers are shared by the tests of
this file; each test uses its own client addresses.
"""
import time

import pytest

from support.dovecot import have_dovecot
from support.httpd import Httpd, have_module
from support.mailguard import bans
from support.webmail import Browser, SquirrelMailSite, have_squirrelmail
from support.webstack import WebmailStack, dovecot_running, stack_fixture

pytestmark = [
    pytest.mark.skipif(not have_module(), reason="mod_mailguard.so not built"),
    pytest.mark.skipif(not have_squirrelmail(), reason="../shared/thirdparty/"
                       "squirrelmail-1.4.23 is absent (SquirrelMail is not packaged in Debian)"),
    pytest.mark.skipif(not have_dovecot(), reason="dovecot-imapd is not installed "
                       "(build/deps.sh installs it)"),
]

GUARD = """
    MailGuardEngine On
    MailGuardWatch squirrelmail
    MailGuardMaxRetry 3
    MailGuardFindTime 10m
    MailGuardBanTime 1h
    <Location "/mailguard-status">
        SetHandler mailguard-status
        Require ip 127.0.0.1
    </Location>
"""
SETTLE = 0.3
# SquirrelMail 1.4 predates PHP 8: its deprecation notices are not errors.
ALLOW = [r"PHP Deprecated", r"PHP Warning"]


class Stack(WebmailStack):
    def __init__(self):
        super().__init__("mg-sqm-redis-")

    def server(self, name, plugin):
        site = SquirrelMailSite(self.dovecot.port, plugin=plugin)
        return self.started(Httpd(mpm="prefork", php=True, redis=self.redis.url,
                                  php_admin=False, vhost_conf=GUARD + site.vhost_conf(),
                                  name=name, allow=ALLOW), site)


@pytest.fixture(scope="module")
def stack():
    yield from stack_fixture(Stack, [("plugin", "sqm-plugin", True),
                                     ("plain", "sqm-plain", False)])


@pytest.fixture
def dovecot_up(stack):
    yield from dovecot_running(stack)


def seen(srv):
    r = Browser(srv).request("GET", "/mailguard-status", cookies=False)
    assert r.status == 200, r
    for line in r.body.splitlines():
        k, _, v = line.partition(": ")
        if k == "FailuresSeen":
            return int(v)
    raise AssertionError("no FailuresSeen")


def wrong(browser, dovecot, user="bob", **kw):
    r = browser.squirrelmail_login(user, "wrong", **kw)
    dovecot.reset_penalty()
    return r


def test_squirrelmail_wrong_password_is_counted_and_banned(stack, dovecot_up):
    for srv, src in ((stack.plugin, "127.0.7.1"), (stack.plain, "127.0.7.2")):
        b = Browser(srv, src)
        before = seen(srv)
        for _ in range(3):
            r = wrong(b, dovecot_up)
            assert r.status == 200
            assert "Unknown user or password incorrect." in r.body
        time.sleep(SETTLE)
        assert seen(srv) - before == 3
        assert src in bans(stack.redis)
        assert b.squirrelmail_login("bob", "right").status == 403


def test_squirrelmail_good_logins_are_never_counted(stack, dovecot_up):
    for srv in (stack.plugin, stack.plain):
        b = Browser(srv, "127.0.7.3")
        before = seen(srv)
        for method in ("POST", "GET", "POST"):
            r = b.squirrelmail_login("bob", "right", method=method)
            assert r.status == 302, (r, r.body[:300])
            assert (r.header("location") or "").endswith("webmail.php")
        time.sleep(SETTLE)
        assert seen(srv) == before
    assert "127.0.7.3" not in bans(stack.redis)


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "OPTIONS", "DELETE", "PATCH"])
def test_squirrelmail_query_credentials_with_any_method_are_counted(stack, dovecot_up, method):
    srv = stack.plugin
    b = Browser(srv, "127.0.7.%d" % (10 + ["GET", "HEAD", "PUT", "OPTIONS", "DELETE",
                                          "PATCH"].index(method)))
    before = seen(srv)
    n = dovecot_up.log_text().count("user=<bob>")
    assert wrong(b, dovecot_up, method=method).status == 200
    assert b.squirrelmail_login("bob", "right", method=method).status == 302
    time.sleep(SETTLE)
    assert dovecot_up.log_text().count("user=<bob>") >= n + 2, "not a real IMAP login"
    assert seen(srv) - before == 1


def test_squirrelmail_post_without_credentials_is_not_counted_with_the_plugin(stack,
                                                                              dovecot_up):
    srv = stack.plugin
    b = Browser(srv, "127.0.7.20")
    before = seen(srv)
    for _ in range(4):
        assert b.request("POST", "/src/redirect.php", body={"x": "1"}).status == 400
    time.sleep(SETTLE)
    assert seen(srv) == before


def test_squirrelmail_imap_down_answers_503_and_bans_nobody(stack, dovecot_up):
    srv = stack.plugin
    before = seen(srv)
    dovecot_up.stop()
    statuses = []
    for i, u in enumerate(["bob", "carol", "dave", "erin", "frank"]):
        b = Browser(srv, "127.0.8.%d" % (i + 1))
        for _ in range(10):
            # The right password: SquirrelMail cannot check it.
            r = b.squirrelmail_login(u, "right")
            statuses.append(r.status)
            assert r.header("retry-after") == "30"
            assert "Error connecting to IMAP server" in r.body
    assert statuses == [503] * 50
    time.sleep(SETTLE)
    assert seen(srv) == before
    assert not [a for a in bans(stack.redis) if a.startswith("127.0.8.")]
    # IMAP back: a wrong password counts again.
    dovecot_up.start()
    dovecot_up.reset_penalty()
    assert wrong(Browser(srv, "127.0.8.9"), dovecot_up).status == 200
    time.sleep(SETTLE)
    assert seen(srv) - before == 1


def test_squirrelmail_imap_down_without_the_plugin_is_counted(stack, dovecot_up):
    """The known limit without the plugin: three retries with the right
    password during an outage ban the user."""
    srv = stack.plain
    b = Browser(srv, "127.0.8.20")
    dovecot_up.stop()
    assert [b.squirrelmail_login("bob", "right").status for _ in range(3)] == [200] * 3
    time.sleep(SETTLE)
    assert "127.0.8.20" in bans(stack.redis)
