"""Every failure counted exactly once, whatever Redis does meanwhile (event
MPM, MailGuardMaxRetry 5).

For each fault (paused, lost its data, wrong password, out of memory, just
slow) an attacker's failures are split before / during / after it, and the
ban comes at exactly the fifth failure: not at the fourth, and with
"5 failures" in the ban's log line.  The module queues what Redis could not
take, with each failure's identity, and the sync process sends it when
Redis can take it again, so nothing counts twice and nothing is lost.
"""
import re
import signal
import time

import pytest

from support.httpd import httpd_factory, need_module  # noqa: F401  (fixtures)
from support.mailguard import bans, busy_redis, now, wait_for

pytestmark = pytest.mark.usefixtures("need_module")

VHOST = """
    MailGuardEngine On
    MailGuardWatch roundcube
    MailGuardMaxRetry 5
    MailGuardFindTime 10m
    MailGuardBanTime 1h
    <Location "/mailguard-status">
        SetHandler mailguard-status
    </Location>
"""
REDIS_LINES = (r"(?i)redis",)


def fields(srv):
    text = srv.get("/mailguard-status").body
    return dict(l.split(": ", 1) for l in text.splitlines() if ": " in l)


def fail(srv, me, n):
    for _ in range(n):
        assert srv.basic_login_fail(src=me).status in (401, 403)


def not_banned_yet(srv, redis, me):
    assert me not in bans(redis)
    assert srv.get("/static.txt", src=me).status == 200


def banned_at_exactly_five(srv, redis, me, within=15):
    assert wait_for(lambda: me in bans(redis), within=within), fields(srv)
    assert srv.get("/static.txt", src=me).status == 403
    lines = [l for l in srv.errlog_lines() if "MG0050: Ban %s " % me in l]
    assert len(lines) == 1 and "5 failures" in lines[0], lines
    # one ban: the history counts one
    assert redis.cmd("HGET", "mailguard:history:%s" % me, "count") == "1"


def module_lines(srv, since, tag):
    return [l for l in srv.errlog_lines(since=since) if tag in l]


def test_a_pause_splitting_the_failures_bans_at_exactly_maxretry(redis_server, httpd_factory):
    srv = httpd_factory(redis=redis_server.url, vhost_conf=VHOST, name="pause",
                        allow=REDIS_LINES)
    me = "127.0.9.1"
    fail(srv, me, 3)
    not_banned_yet(srv, redis_server, me)
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        fail(srv, me, 1)
        time.sleep(0.3)
        not_banned_yet_locally = srv.get("/static.txt", src=me).status
        fail(srv, me, 1)
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    assert not_banned_yet_locally == 200
    banned_at_exactly_five(srv, redis_server, me)
    # nothing counted twice: the window was cleared by the ban, and the
    # sixth failure starts it afresh at 1
    fail(srv, me, 0)
    f = fields(srv)
    assert int(f["FailuresQueued"]) >= 1


def test_redis_losing_its_data_between_failures_still_bans_at_exactly_maxretry(redis_server,
                                                                                httpd_factory):
    srv = httpd_factory(redis=redis_server.url, vhost_conf=VHOST, name="lost",
                        allow=REDIS_LINES)
    me = "127.0.9.2"
    fail(srv, me, 3)
    # recorded after the response (log_transaction): the last one a moment
    # after its 401
    assert wait_for(lambda: redis_server.cmd("ZCARD", "mailguard:fail:webmail:%s" % me) == 3,
                    within=5)
    redis_server.restart()              # no persistence: everything gone
    # the sync job notices (a log shorter than its own), keeps its bans and
    # sends the failures it remembers again
    assert wait_for(lambda: redis_server.cmd("ZCARD", "mailguard:fail:webmail:%s" % me) == 3,
                    within=10), "the remembered failures were not sent again"
    fail(srv, me, 1)
    not_banned_yet(srv, redis_server, me)
    fail(srv, me, 1)
    banned_at_exactly_five(srv, redis_server, me)


def test_a_wrong_password_is_named_and_its_failures_counted_once_it_is_right(redis_factory,
                                                                            httpd_factory):
    redis = redis_factory(password="right-Pw1")
    srv = httpd_factory(redis=redis.url, vhost_conf=VHOST, name="wrongpass",
                        allow=REDIS_LINES)
    me = "127.0.9.3"
    fail(srv, me, 2)
    mark = srv.mark()
    redis.cmd("CONFIG", "SET", "requirepass", "other-Pw2")
    redis.password = "other-Pw2"
    redis.cmd("CLIENT", "KILL", "TYPE", "normal")
    fail(srv, me, 2)
    assert wait_for(lambda: module_lines(srv, mark, "MG0032"), within=5)
    down = module_lines(srv, mark, "MG0032")
    assert len(down) == 1 and "WRONGPASS" in down[0], down
    not_banned_yet(srv, redis, me)
    redis.cmd("CONFIG", "SET", "requirepass", "right-Pw1")
    redis.password = "right-Pw1"
    assert wait_for(lambda: module_lines(srv, mark, "MG0031"), within=10)
    assert wait_for(lambda: redis.cmd("ZCARD", "mailguard:fail:webmail:%s" % me) == 4,
                    within=10)
    fail(srv, me, 1)
    banned_at_exactly_five(srv, redis, me)


def test_redis_out_of_memory_writes_nothing_and_counts_on_when_memory_frees(redis_server,
                                                                           httpd_factory):
    srv = httpd_factory(redis=redis_server.url, vhost_conf=VHOST, name="oom",
                        allow=REDIS_LINES)
    me = "127.0.9.4"
    fail(srv, me, 2)
    mark = srv.mark()
    used = int(re.search(r"used_memory:(\d+)", redis_server.cmd("INFO", "memory")).group(1))
    redis_server.cmd("CONFIG", "SET", "maxmemory-policy", "noeviction")
    redis_server.cmd("CONFIG", "SET", "maxmemory", str(used + 100000))
    redis_server.cmd("EVAL", "for i=1,3000 do redis.call('SET','fill'..i,string.rep('x',100)) "
                     "end return 1", 0)
    before = redis_server.cmd("ZCARD", "mailguard:fail:webmail:%s" % me)
    fail(srv, me, 2)
    assert wait_for(lambda: module_lines(srv, mark, "MG0032"), within=5)
    down = module_lines(srv, mark, "MG0032")
    assert len(down) == 1 and "OOM" in down[0], down
    # refused before writing anything
    assert redis_server.cmd("ZCARD", "mailguard:fail:webmail:%s" % me) == before == 2
    for i in range(1, 3001):
        redis_server.cmd("DEL", "fill%d" % i)
    redis_server.cmd("CONFIG", "SET", "maxmemory", "0")
    assert wait_for(lambda: redis_server.cmd("ZCARD", "mailguard:fail:webmail:%s" % me) == 4,
                    within=10), fields(srv)
    fail(srv, me, 1)
    banned_at_exactly_five(srv, redis_server, me)


def test_a_slow_redis_is_not_an_outage(redis_server, httpd_factory):
    """A failure recorded while Redis runs someone else's 300 ms script
    times out (100 ms): it is queued and sent once Redis answers, the
    breaker stays closed (no MG0032), and it counts exactly once."""
    srv = httpd_factory(redis=redis_server.url, vhost_conf=VHOST, name="slow",
                        allow=REDIS_LINES)
    me = "127.0.9.5"
    fail(srv, me, 1)
    mark = srv.mark()
    busy = busy_redis(redis_server, 0.3)
    fail(srv, me, 1)
    busy.join()
    assert wait_for(lambda: redis_server.cmd("ZCARD", "mailguard:fail:webmail:%s" % me) == 2,
                    within=10), fields(srv)
    time.sleep(0.5)
    assert redis_server.cmd("ZCARD", "mailguard:fail:webmail:%s" % me) == 2
    assert not module_lines(srv, mark, "MG0032")
    f = fields(srv)
    # at least the one behind the script (a first call of a new child can
    # be slow as well on a busy machine: queued, it comes back a duplicate)
    assert f["RedisState"] == "up" and int(f["FailuresQueued"]) >= 1, f
    fail(srv, me, 3)
    banned_at_exactly_five(srv, redis_server, me)


def test_the_ban_made_by_a_call_that_timed_out_is_logged_once(redis_server, httpd_factory):
    """The fifth failure's call times out (Redis is stopped for a moment)
    but runs once Redis goes on, so the ban is made then, and its answer is
    lost.  The queued failure, sent again, comes back as a duplicate that
    made the live ban: the server logs that ban (once, with its five
    failures) and counts it, as if the answer had arrived.

    Which child takes the fifth request is httpd's choice: one without a
    connection yet times out before the script is even sent, and the
    resend then makes the ban itself.  Either way the ban is logged once;
    the attempts go on with a new address until the script did go out."""
    srv = httpd_factory(redis=redis_server.url, vhost_conf=VHOST, name="slowban",
                        allow=REDIS_LINES)
    ran_late = 0
    for i in range(6):
        me = "127.0.9.%d" % (60 + i)
        fail(srv, me, 4)
        not_banned_yet(srv, redis_server, me)
        f0 = fields(srv)
        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            fail(srv, me, 1)
            # the call timed out (100 ms): queued, not counted here
            assert wait_for(lambda: int(fields(srv)["FailuresQueued"]) ==
                            int(f0["FailuresQueued"]) + 1, within=2), fields(srv)
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)
        banned_at_exactly_five(srv, redis_server, me)
        assert wait_for(lambda: int(fields(srv)["QueuedFailures"]) == 0, within=10), fields(srv)
        f = fields(srv)
        assert int(f["BansMade"]) == int(f0["BansMade"]) + 1, f
        assert int(f["FailuresLocal"]) == int(f0["FailuresLocal"]), f
        # the line came from the sync process (no client), not the request
        line = [l for l in srv.errlog_lines() if "MG0050: Ban %s " % me in l][0]
        assert "[client " not in line, line
        dup = int(f["FailuresDuplicate"]) - int(f0["FailuresDuplicate"])
        assert dup in (0, 1), f
        ran_late += dup
        if ran_late:
            break
    assert ran_late, "the fifth failure's script never went out before its timeout"
