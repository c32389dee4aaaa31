"""SetHandler mailguard-status: the module's counters as "Key: value" lines
(event MPM; Redis with a password, which the page must never show)."""
import time

import pytest

from support.httpd import httpd_factory, need_module  # noqa: F401  (fixtures)
from support.mailguard import bans, wait_for

pytestmark = pytest.mark.usefixtures("need_module")

PASSWORD = "s3cret-Pw9"
VHOST = """
    MailGuardEngine On
    MailGuardWatch roundcube
    MailGuardMaxRetry 2
    MailGuardBanTime 1h
    MailGuardIgnoreIP 127.0.8.9
    <Location "/mailguard-status">
        SetHandler mailguard-status
        Require ip 127.0.0.1
    </Location>
"""


def status_page(srv):
    r = srv.get("/mailguard-status")
    assert r.status == 200, r
    fields = {}
    for line in r.body.splitlines():
        key, sep, value = line.partition(": ")
        assert sep, "not a Key: value line: %r" % line
        fields[key] = value
    return r.body, fields


def delta(after, before, key):
    return int(after[key]) - int(before[key])


def test_status_page_counts_failures_bans_and_denials(redis_factory, httpd_factory):
    redis = redis_factory(password=PASSWORD)
    srv = httpd_factory(redis=redis.url, vhost_conf=VHOST, name="status",
                        allow=(r"(?i)redis",))
    body, s0 = status_page(srv)
    assert PASSWORD not in body
    assert str(redis.port) in s0["Redis"]
    assert s0["RedisState"] == "up"
    assert int(s0["SyncPid"]) > 0
    me = "127.0.8.1"
    for _ in range(2):
        assert srv.basic_login_fail(src=me).status == 401
    assert srv.basic_login_fail(src="127.0.8.9").status == 401      # ignored
    time.sleep(0.3)
    for _ in range(3):
        assert srv.get("/static.txt", src=me).status == 403
    assert me in bans(redis)
    _, s1 = status_page(srv)
    assert delta(s1, s0, "FailuresSeen") == 3
    assert delta(s1, s0, "FailuresIgnored") == 1
    assert delta(s1, s0, "FailuresRecorded") == 2
    assert delta(s1, s0, "BansMade") == 1
    assert delta(s1, s0, "Denied") == 3
    assert int(s1["BansMirrored"]) >= 1
    # the mirror follows the change log: in step, Redis's live count seen,
    # the ban applied (made here, logged by Redis, read back)
    assert wait_for(lambda: status_page(srv)[1]["LiveInRedis"] == "1", within=3, step=0.2)
    _, s2 = status_page(srv)
    assert s2["InStep"] == "1" and s2["NotMirrored"] == "0"
    assert int(s2["EventsApplied"]) >= 1 and s2["ChangesRefused"] == "0"
    assert s2["BansEvicted"] == "0"
    # Redis goes away: the page says so, without a password either.
    redis.stop()
    assert wait_for(lambda: status_page(srv)[1]["RedisState"] == "down", within=5, step=0.2)
    body, _ = status_page(srv)
    assert PASSWORD not in body
    redis.start()
    assert wait_for(lambda: status_page(srv)[1]["RedisState"] == "up", within=10, step=0.2)
    srv.stop()


def test_status_page_answers_get_only(redis_server, httpd_factory):
    srv = httpd_factory(redis=redis_server.url, vhost_conf=VHOST, name="status-post")
    assert srv.post("/mailguard-status", "x=1").status == 405
    assert srv.get("/mailguard-status").status == 200
