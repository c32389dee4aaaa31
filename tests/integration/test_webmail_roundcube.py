"""mod_mailguard in front of the real Roundcube (Debian's package) and a real
Dovecot, with and without the project's Roundcube plugin, under mod_php and
PHP-FPM.

What is counted (README, "Webmail plugins"): a POST answered 401.  With the
plugin, 401 means exactly "the IMAP server rejected the password"; the
storage being down answers 503, the rate-limit lock 429, an invalid request
400, and none of those is counted.

One Dovecot, one Redis and three Apache servers are shared by the tests of
this file (starting Roundcube is the slow part); each test uses its own
client addresses, and user names that no other test uses where Roundcube's
per-user rate limit could carry over.  Every failed login is followed by a
right-password IMAP login from 127.0.0.1, which clears Dovecot's per-address
auth penalty (see support/dovecot.py).
"""
import time

import pytest

from support.dovecot import have_dovecot
from support.httpd import SANITIZER_PRELOAD, Httpd, have_module
from support.mailguard import bans
from support.webmail import Browser, PhpFpm, RoundcubeSite, have_php_fpm, have_roundcube
from support.webstack import WebmailStack, dovecot_running, stack_fixture

pytestmark = [
    pytest.mark.skipif(not have_module(), reason="mod_mailguard.so not built"),
    pytest.mark.skipif(not have_roundcube(), reason="Debian's roundcube package is not "
                       "installed (build/deps.sh installs it)"),
    pytest.mark.skipif(not have_dovecot(), reason="dovecot-imapd is not installed "
                       "(build/deps.sh installs it)"),
]

GUARD = """
    MailGuardEngine On
    MailGuardWatch roundcube
    MailGuardMaxRetry 3
    MailGuardFindTime 10m
    MailGuardBanTime 1h
    <Location "/mailguard-status">
        SetHandler mailguard-status
        Require ip 127.0.0.1
    </Location>
"""
# The ban is recorded after the response (log_transaction).
SETTLE = 0.3
# PHP deprecation notices of Roundcube 1.6 under PHP 8.2 are not errors;
# Roundcube logs its own IMAP connection errors to its logs/errors.log.
ALLOW = [r"PHP Deprecated", r"AH01071: Got error 'PHP Deprecated"]


class Stack(WebmailStack):
    """Dovecot + Redis + the Apache servers of this file."""

    def __init__(self):
        super().__init__("mg-rc-redis-")
        self.fpm = None

    def server(self, name, plugin=True, fpm=False):
        site = RoundcubeSite(self.dovecot.port, plugin=plugin)
        kw = {}
        # Under make asan-test httpd runs with the ASan runtime preloaded,
        # and mod_php cannot load the extensions Roundcube needs beside it
        # (PHP dlopens them with RTLD_DEEPBIND, which the runtime refuses):
        # PHP then runs in php-fpm, outside the instrumented process.
        if fpm or SANITIZER_PRELOAD:
            if self.fpm is None:
                self.fpm = PhpFpm().start()
                self.extras.append(self.fpm)
            kw["fpm"] = self.fpm
        return self.started(Httpd(mpm="prefork", php="fpm" not in kw, redis=self.redis.url,
                                  vhost_conf=GUARD + site.vhost_conf(), name=name,
                                  allow=ALLOW, php_admin=False, **kw), site)


@pytest.fixture(scope="module")
def stack():
    yield from stack_fixture(Stack, [("plugin", "rc-plugin", True),
                                     ("plain", "rc-plain", False)])


@pytest.fixture(scope="module")
def fpm_server(stack):
    if not have_php_fpm():
        pytest.skip("php-fpm is not installed (build/deps.sh installs php8.2-fpm)")
    return stack.server("rc-fpm", plugin=True, fpm=True)


@pytest.fixture
def dovecot_up(stack):
    yield from dovecot_running(stack)


def counters(srv):
    r = Browser(srv).request("GET", "/mailguard-status", cookies=False)
    assert r.status == 200, r
    out = {}
    for line in r.body.splitlines():
        k, _, v = line.partition(": ")
        out[k] = v
    return out


def seen(srv):
    return int(counters(srv)["FailuresSeen"])


def wrong(browser, dovecot, user, **kw):
    """One wrong-password login through Roundcube, then clear Dovecot's
    penalty for the next one."""
    r = browser.roundcube_login(user, "wrong", **kw)
    dovecot.reset_penalty()
    return r


# ---- the plain cases ----

def test_roundcube_wrong_password_is_counted_and_banned(stack, dovecot_up):
    srv = stack.plugin
    b = Browser(srv, "127.0.4.1")
    before = seen(srv)
    assert [wrong(b, dovecot_up, "nosuch1").status for _ in range(3)] == [401, 401, 401]
    time.sleep(SETTLE)
    assert seen(srv) - before == 3
    assert "127.0.4.1" in bans(stack.redis)
    logins = dovecot_up.log_text().count("user=<nosuch1>")
    assert b.request("GET", "/?_task=login").status == 403
    assert b.roundcube_login("bob", "right", token=False).status == 403
    assert dovecot_up.log_text().count("user=<nosuch1>") == logins


def test_roundcube_good_logins_are_never_counted(stack, dovecot_up):
    for srv in (stack.plugin, stack.plain):
        b = Browser(srv, "127.0.4.2")
        before = counters(srv)
        for _ in range(4):
            r = b.roundcube_login("bob", "right")
            assert r.status == 302, (r, r.body[:300])
            assert "_task=mail" in (r.header("location") or "")
        time.sleep(SETTLE)
        after = counters(srv)
        assert int(after["FailuresSeen"]) == int(before["FailuresSeen"])
        assert int(after["Successes"]) - int(before["Successes"]) == 4
    assert "127.0.4.2" not in bans(stack.redis)


# ---- the bypasses (issue 8, "Missed") ----

def test_roundcube_task_in_body_is_counted(stack, dovecot_up):
    """POST /?_task=mail with _task=login in the body is a real login."""
    for srv, src in ((stack.plugin, "127.0.4.3"), (stack.plain, "127.0.4.4")):
        b = Browser(srv, src)
        before = seen(srv)
        n = dovecot_up.log_text().count("user=<nosuch2>")
        r = wrong(b, dovecot_up, "nosuch2", query="_task=mail")
        assert r.status == 401
        time.sleep(SETTLE)
        assert dovecot_up.log_text().count("user=<nosuch2>") == n + 1, "no IMAP login"
        assert seen(srv) - before == 1


@pytest.mark.parametrize("where", ["query", "body"])
@pytest.mark.parametrize("flag", ["_framed", "_remote"])
def test_roundcube_framed_or_remote_login_is_counted_with_the_plugin(stack, dovecot_up,
                                                                     flag, where):
    srv = stack.plugin
    b = Browser(srv, "127.0.4.%d" % (10 + ["_framed", "_remote"].index(flag) * 2
                                     + ["query", "body"].index(where)))
    before = seen(srv)
    if where == "query":
        r = wrong(b, dovecot_up, "nosuch3", query="_task=login&%s=1" % flag)
    else:
        r = wrong(b, dovecot_up, "nosuch3", extra={flag: "1"})
    assert r.status == 401
    time.sleep(SETTLE)
    assert seen(srv) - before == 1


def test_roundcube_framed_login_without_the_plugin_answers_200_and_is_not_seen(stack,
                                                                                 dovecot_up):
    """The known limit without the plugin: Roundcube answers 200, which a
    logged-in user's requests answer too; the body that says "login" is
    gone by the time the module looks."""
    srv = stack.plain
    b = Browser(srv, "127.0.4.20")
    before = seen(srv)
    assert wrong(b, dovecot_up, "nosuch4", extra={"_remote": "1"}).status == 200
    assert wrong(b, dovecot_up, "nosuch4", query="_task=login&_framed=1").status == 200
    time.sleep(SETTLE)
    assert seen(srv) == before


# ---- what is not a password check (issue 8, "Counted though ...") ----

def test_roundcube_cross_site_post_without_token_is_not_counted(stack, dovecot_up):
    srv = stack.plugin
    b = Browser(srv, "127.0.4.21")
    before = seen(srv)
    n = dovecot_up.log_text().count("user=<bob>")
    for _ in range(5):
        # What a foreign page's form makes the visitor's browser send: no
        # session cookie, no token.
        assert b.roundcube_login("bob", "guess", token=False).status == 400
    time.sleep(SETTLE)
    assert seen(srv) == before
    assert dovecot_up.log_text().count("user=<bob>") == n, "a token-less POST reached IMAP"
    assert "127.0.4.21" not in bans(stack.redis)


def test_roundcube_cross_site_post_without_the_plugin_is_counted(stack, dovecot_up):
    """The known limit without the plugin: Roundcube's 401 says nothing
    about why."""
    srv = stack.plain
    b = Browser(srv, "127.0.4.22")
    before = seen(srv)
    assert b.roundcube_login("bob", "guess", token=False).status == 401
    time.sleep(SETTLE)
    assert seen(srv) - before == 1


def test_roundcube_rate_limit_lock_is_not_counted(stack, dovecot_up):
    srv = stack.plugin
    b = Browser(srv, "127.0.4.23")
    # Roundcube locks a user it knows (one that logged in before) after
    # login_rate_limit (3) failures within a minute.
    assert b.roundcube_login("carol", "right").status == 302
    before = seen(srv)
    statuses = [wrong(Browser(srv, "127.0.4.%d" % (24 + i)), dovecot_up, "carol").status
                for i in range(5)]
    assert statuses[:3] == [401, 401, 401]
    assert statuses[3:] == [429, 429], statuses
    time.sleep(SETTLE)
    assert seen(srv) - before == 3


def test_roundcube_imap_down_answers_503_and_bans_nobody(stack, dovecot_up):
    srv = stack.plugin
    users = ["dave", "erin", "frank", "grace", "heidi"]
    for i, u in enumerate(users[:2]):
        assert Browser(srv, "127.0.5.%d" % (i + 1)).roundcube_login(u, "right").status == 302
    before = seen(srv)
    dovecot_up.stop()
    statuses = []
    for i, u in enumerate(users):
        b = Browser(srv, "127.0.5.%d" % (i + 1))
        for _ in range(10):
            r = b.roundcube_login(u, "right")
            statuses.append(r.status)
            if r.status == 503:
                assert r.header("retry-after") == "30"
    # Users Roundcube knows hit its rate-limit lock after 3 tries: 429.
    assert set(statuses) <= {503, 429}, statuses
    assert statuses.count(503) >= 30
    time.sleep(SETTLE)
    assert seen(srv) == before
    live = bans(stack.redis)
    assert not [a for a in live if a.startswith("127.0.5.")], live
    # IMAP back: a wrong password counts again.
    dovecot_up.start()
    dovecot_up.reset_penalty()
    assert wrong(Browser(srv, "127.0.5.9"), dovecot_up, "nosuch5").status == 401
    time.sleep(SETTLE)
    assert seen(srv) - before == 1


def test_roundcube_imap_down_without_the_plugin_is_counted(stack, dovecot_up):
    """The known limit without the plugin: every login during an outage is
    a 401, and users who retry are banned."""
    srv = stack.plain
    b = Browser(srv, "127.0.5.20")
    dovecot_up.stop()
    assert [b.roundcube_login("nosuch6", "right").status for _ in range(3)] == [401] * 3
    time.sleep(SETTLE)
    assert "127.0.5.20" in bans(stack.redis)


# ---- PHP-FPM ----

def test_roundcube_under_php_fpm_counts_password_failures_only(stack, dovecot_up, fpm_server):
    srv = fpm_server
    before = seen(srv)
    b = Browser(srv, "127.0.6.1")
    assert b.roundcube_login("bob", "right").status == 302
    assert wrong(b, dovecot_up, "nosuch7").status == 401
    assert wrong(b, dovecot_up, "nosuch7", extra={"_remote": "1"}).status == 401
    assert b.roundcube_login("bob", "guess", token=False).status == 400
    dovecot_up.stop()
    r = b.roundcube_login("nosuch7", "right")
    assert r.status == 503 and r.header("retry-after") == "30"
    time.sleep(SETTLE)
    assert seen(srv) - before == 2
