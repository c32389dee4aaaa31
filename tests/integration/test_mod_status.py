"""SetHandler mailguard-status: the module's counters as "Key: value" lines
and, with ?format=prometheus, in Prometheus's text format (event MPM; Redis
with a password, which neither page may show)."""
import time
import urllib.error
import urllib.request

import pytest

from support.httpd import httpd_factory, need_module  # noqa: F401  (fixtures)
from support.mailguard import bans, wait_for
from support.promtext import parse, promtool, promtool_check, value

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


# ---- ?format=prometheus ----

# Every plain key and the Prometheus family that reports the same thing.
PLAIN_TO_PROM = {
    "BansMirrored": "mailguard_bans_mirrored",
    "BanTableSize": "mailguard_ban_table_size",
    "Denied": "mailguard_denied_total",
    "FailuresSeen": "mailguard_failures_seen_total",
    "FailuresRecorded": "mailguard_failures_recorded_total",
    "FailuresLocal": "mailguard_failures_local_total",
    "FailuresIgnored": "mailguard_failures_ignored_total",
    "FailuresUnattributable": "mailguard_failures_unattributable_total",
    "FailuresQueued": "mailguard_failures_queued_total",
    "FailuresDuplicate": "mailguard_failures_duplicate_total",
    "FailuresDropped": "mailguard_failures_dropped_total",
    "QueuedFailures": "mailguard_queued_failures",
    "Successes": "mailguard_login_successes_total",
    "BansMade": "mailguard_bans_made_total",
    "PendingBans": "mailguard_pending_bans",
    "NotMirrored": "mailguard_bans_not_mirrored",
    "LiveInRedis": "mailguard_bans_live_in_redis",
    "BansEvicted": "mailguard_bans_evicted_total",
    "InStep": "mailguard_in_step",
    "EventsApplied": "mailguard_changes_applied_total",
    "ChangesRefused": "mailguard_changes_refused_total",
    "Syncs": "mailguard_snapshots_total",
    "SyncErrors": "mailguard_sync_errors_total",
    "SyncPid": "mailguard_sync_pid",
}
PLAIN_KEYS = ["Redis", "RedisState", "BansMirrored", "BanTableSize", "Denied", "FailuresSeen",
              "FailuresRecorded", "FailuresLocal", "FailuresIgnored", "FailuresUnattributable",
              "FailuresQueued", "FailuresDuplicate", "FailuresDropped", "QueuedFailures",
              "Successes", "BansMade", "PendingBans", "NotMirrored", "LiveInRedis",
              "BansEvicted", "InStep", "EventsApplied", "ChangesRefused", "Syncs",
              "SyncErrors", "LastSync", "LastSyncAge", "SyncPid"]


def fetch(srv, query="", method="GET"):
    """(status, content type, body) of the status page, through urllib:
    the headers matter here."""
    req = urllib.request.Request("http://127.0.0.1:%d/mailguard-status%s" % (srv.port, query),
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode(errors="replace")


def prometheus_page(srv):
    status, ctype, body = fetch(srv, "?format=prometheus")
    assert status == 200, body
    assert ctype == "text/plain; version=0.0.4; charset=utf-8"
    fams = parse(body)           # the strict grammar; raises on any fault
    tool = promtool()
    if tool is not None:
        ok, out = promtool_check(body, tool)
        assert ok, out
    return body, fams


def test_prometheus_page_counts_failures_bans_and_denials_exactly(redis_factory, httpd_factory):
    redis = redis_factory(password=PASSWORD)
    srv = httpd_factory(redis=redis.url, vhost_conf=VHOST, name="prom",
                        allow=(r"(?i)redis",))
    body, f0 = prometheus_page(srv)
    assert PASSWORD not in body
    for fam in ("mailguard_failures_seen_total", "mailguard_bans_made_total",
                "mailguard_denied_total", "mailguard_bans_live_in_redis"):
        assert value(f0, fam) == 0, fam
    assert value(f0, "mailguard_redis_state", state="up") == 1
    assert value(f0, "mailguard_redis_state", state="down") == 0
    assert value(f0, "mailguard_redis_state", state="none") == 0
    url = list(f0["mailguard_redis_info"]["samples"])[0][0][1]
    assert url == "redis://:***@127.0.0.1:%d/0" % redis.port
    # the scenario: two clients banned (2 failures each, MaxRetry 2), one
    # failure below the limit, one from the ignore list, then 3 + 2
    # requests of the banned clients refused
    for src in ("127.0.8.1", "127.0.8.1", "127.0.8.2", "127.0.8.2", "127.0.8.3", "127.0.8.9"):
        assert srv.basic_login_fail(src=src).status == 401
    for src in ("127.0.8.1",) * 3 + ("127.0.8.2",) * 2:
        assert srv.get("/static.txt", src=src).status == 403
    assert srv.get("/static.txt", src="127.0.8.3").status == 200
    assert wait_for(lambda: value(prometheus_page(srv)[1], "mailguard_bans_live_in_redis") == 2,
                    within=5, step=0.2)
    _, f1 = prometheus_page(srv)
    expect = {
        "mailguard_failures_seen_total": 6,
        "mailguard_failures_recorded_total": 4 + 1,
        "mailguard_failures_ignored_total": 1,
        "mailguard_failures_local_total": 0,
        "mailguard_failures_unattributable_total": 0,
        "mailguard_login_successes_total": 0,
        "mailguard_bans_made_total": 2,
        "mailguard_denied_total": 5,
        "mailguard_pending_bans": 0,
        "mailguard_bans_mirrored": 2,
        "mailguard_bans_live_in_redis": 2,
        "mailguard_bans_not_mirrored": 0,
        "mailguard_bans_evicted_total": 0,
        "mailguard_in_step": 1,
        "mailguard_changes_refused_total": 0,
    }
    for fam, want in expect.items():
        assert value(f1, fam) == want, (fam, value(f1, fam), want)
    # the two bans were made here, logged by Redis and read back
    assert value(f1, "mailguard_changes_applied_total") >= 2
    assert value(f1, "mailguard_sync_pid") > 0
    assert value(f1, "mailguard_ban_table_size") > 0
    assert 0 <= value(f1, "mailguard_last_sync_age_seconds") <= 3
    assert abs(value(f1, "mailguard_last_sync_timestamp_seconds") - time.time()) < 5
    # Redis goes away: the state says so, without a password either
    redis.stop()
    assert wait_for(lambda: value(prometheus_page(srv)[1], "mailguard_redis_state",
                                  state="down") == 1, within=5, step=0.2)
    body, f2 = prometheus_page(srv)
    assert PASSWORD not in body
    assert value(f2, "mailguard_redis_state", state="up") == 0
    redis.start()
    assert wait_for(lambda: value(prometheus_page(srv)[1], "mailguard_redis_state",
                                  state="up") == 1, within=10, step=0.2)
    srv.stop()


def test_prometheus_and_plain_pages_report_the_same(redis_server, httpd_factory):
    srv = httpd_factory(redis=redis_server.url, vhost_conf=VHOST, name="prom-plain")
    for src in ("127.0.8.4", "127.0.8.4", "127.0.8.5"):
        assert srv.basic_login_fail(src=src).status == 401
    assert srv.get("/static.txt", src="127.0.8.4").status == 403
    assert wait_for(lambda: status_page(srv)[1]["LiveInRedis"] == "1", within=3, step=0.2)
    # the plain page is unchanged: every key, in its order, nothing else
    body, plain = status_page(srv)
    assert [line.split(": ", 1)[0] for line in body.splitlines()] == PLAIN_KEYS
    _, fams = prometheus_page(srv)
    for key, fam in PLAIN_TO_PROM.items():
        assert value(fams, fam) == int(plain[key]), (key, fam)
    assert value(fams, "mailguard_redis_state", state=plain["RedisState"]) == 1
    assert ("url", plain["Redis"]) in [labels[0] for labels in
                                       fams["mailguard_redis_info"]["samples"]]
    # two requests a moment apart: the ages may differ by the second that passed
    assert abs(value(fams, "mailguard_last_sync_age_seconds") - int(plain["LastSyncAge"])) <= 2
    # every family has its help, counters end in _total (parse() checked);
    # the module's counters are per server: no jail label anywhere
    for name, fam in fams.items():
        assert name.startswith("mailguard_")
        assert fam["help"]
        for labels in fam["samples"]:
            assert "jail" not in dict(labels)


def test_prometheus_page_with_redis_none_and_no_sync_yet(httpd_factory):
    srv = httpd_factory(redis="none", vhost_conf=VHOST, name="prom-none")
    _, fams = prometheus_page(srv)
    assert value(fams, "mailguard_redis_state", state="none") == 1
    assert value(fams, "mailguard_redis_state", state="up") == 0
    assert value(fams, "mailguard_redis_info", url="none") == 1
    # never synced: the timestamp says 0 and the age is left out, as on
    # the plain page
    assert value(fams, "mailguard_last_sync_timestamp_seconds") == 0
    assert "mailguard_last_sync_age_seconds" not in fams
    _, plain = status_page(srv)
    assert plain["LastSync"] == "never" and "LastSyncAge" not in plain


def test_status_formats_and_methods(redis_server, httpd_factory):
    srv = httpd_factory(redis=redis_server.url, vhost_conf=VHOST, name="prom-fmt")
    status, ctype, body = fetch(srv)
    assert status == 200 and ctype == "text/plain; charset=utf-8"
    assert body.startswith("Redis: ")
    # format=plain, other parameters (mod_status's ?auto, cache busting)
    # and their order leave the page as it is
    for q in ("?format=plain", "?auto", "?x=1&format=plain", "?format=prometheus&format=plain"):
        status, ctype, body2 = fetch(srv, q)
        assert status == 200 and body2.startswith("Redis: "), q
    for q in ("?auto&format=prometheus", "?x=1;format=prometheus"):
        status, ctype, body2 = fetch(srv, q)
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4"), q
        parse(body2)
    # an unknown format is a mistake worth seeing at once
    for q in ("?format=json", "?format=", "?format=Prometheus", "?format=prometheus%20"):
        assert fetch(srv, q)[0] == 400, q
    status, ctype, body = fetch(srv, "?format=prometheus", method="HEAD")
    assert status == 200 and body == ""
    assert ctype.startswith("text/plain; version=0.0.4")
    assert fetch(srv, "?format=prometheus", method="POST")[0] == 405
