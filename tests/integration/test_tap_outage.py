"""Redis going away never stops dbmail_tap reading, and loses nothing."""
import os
import re
import signal
import time

import pytest

from support.mailguard import busy_redis
from support.tap import TapDaemon, append, imap_fail, wait_for


@pytest.fixture
def tap(build_dir, tmp_path, redis_server):
    t = TapDaemon(build_dir, tmp_path, redis_server, default={"maxretry": "5"})
    open(t.logfile, "w").close()
    yield t
    t.kill()


def test_failures_during_an_outage_reach_redis_when_it_returns(tap, redis_server):
    tap.start()
    append(tap.logfile, imap_fail("203.0.113.20"))
    wait_for(lambda: tap.window("dbmail-imap", "203.0.113.20") == 1, what="before outage")
    redis_server.stop()
    # the restarted Redis is empty: the 5 queued failures alone must ban
    lines = imap_fail("203.0.113.20") * 5 + "".join(
        imap_fail("198.51.100.%d" % i) for i in range(1, 101))
    append(tap.logfile, lines)
    tap.wait_log("MG0620: Redis unavailable", timeout=5)
    time.sleep(0.5)
    assert tap.proc.poll() is None
    redis_server.start()   # same port, empty: a real restart
    wait_for(lambda: tap.banned("203.0.113.20"), timeout=10, what="ban after outage")
    wait_for(lambda: all(tap.window("dbmail-imap", "198.51.100.%d" % i) == 1
                         for i in (1, 50, 100)), timeout=10, what="queued failures")
    tap.wait_log("MG0622: Redis is back")
    n = len(tap.redis.cmd("KEYS", "mailguard:fail:dbmail-imap:198.51.100.*"))
    assert n == 100
    assert tap.stop() == 0


def test_reading_goes_on_while_redis_is_down(tap, redis_server):
    redis_server.stop()
    tap.start()
    append(tap.logfile, "".join(imap_fail("10.1.%d.%d" % (i // 200, i % 200)) for i in range(5000)))
    # The statefile advances past nothing stored, but the reader keeps up:
    # SIGHUP is answered at once, the daemon stays alive.
    tap.send(signal.SIGHUP)
    tap.wait_log("MG0601: SIGHUP", timeout=2)
    assert tap.proc.poll() is None
    redis_server.start()
    wait_for(lambda: len(tap.redis.cmd("KEYS", "mailguard:fail:dbmail-imap:10.1.*")) == 5000,
             timeout=20, what="all 5000")
    assert tap.stop() == 0


def snapshot(redis, key):
    kind = redis.cmd("TYPE", key)
    if kind == "zset":
        return kind, redis.cmd("ZRANGE", key, 0, -1, "WITHSCORES")
    return kind, redis.cmd("GET", key)


def restore(redis, key, snap):
    kind, data = snap
    if kind == "zset":
        args = []
        for i in range(0, len(data), 2):
            args += [data[i + 1], data[i]]
        redis.cmd("ZADD", key, *args)
    elif kind == "string":
        redis.cmd("SET", key, data)


def test_stopped_during_an_outage_the_queued_failures_are_read_again_at_start(tap, redis_server):
    key = "mailguard:fail:dbmail-imap:203.0.113.30"
    tap.start()
    append(tap.logfile, imap_fail("203.0.113.30") * 2)
    wait_for(lambda: tap.window("dbmail-imap", "203.0.113.30") == 2, what="stored")
    snap = snapshot(redis_server, key)
    redis_server.stop()
    append(tap.logfile, imap_fail("203.0.113.30") * 2 + imap_fail("203.0.113.31"))
    tap.wait_log("MG0620: Redis unavailable", timeout=5)
    assert tap.stop() == 0
    tap.wait_log("MG0624: 3 failures not stored")
    # As if Redis had kept its data: the restart re-reads exactly the
    # unstored lines, so 2 stored + 2 re-read, never the first 2 again.
    redis_server.start()
    restore(redis_server, key, snap)
    assert tap.window("dbmail-imap", "203.0.113.30") == 2
    tap.start()
    wait_for(lambda: tap.window("dbmail-imap", "203.0.113.31") == 1, what="re-read")
    wait_for(lambda: tap.window("dbmail-imap", "203.0.113.30") == 4, what="2 + 2, no double")
    time.sleep(0.3)
    assert tap.window("dbmail-imap", "203.0.113.30") == 4
    assert tap.stop() == 0


def test_sigterm_with_redis_down_still_exits_0_promptly(tap, redis_server):
    tap.start()
    redis_server.stop()
    append(tap.logfile, imap_fail("203.0.113.40"))
    time.sleep(0.3)
    t0 = time.monotonic()
    assert tap.stop() == 0
    assert time.monotonic() - t0 < 5


def rotate_during_an_outage(tap, redis_server, a, b):
    """Redis away; 3 failures of a in the file, which is then rotated by
    rename; 2 failures of b in the new one; past the old file's grace."""
    tap.start()
    redis_server.stop()
    append(tap.logfile, imap_fail(a) * 3)
    tap.wait_log("MG0620: Redis unavailable", timeout=5)
    os.rename(tap.logfile, tap.logfile + ".1")
    append(tap.logfile, imap_fail(b) * 2)
    tap.wait_log("MG0612: .* was rotated")
    time.sleep(2.5)         # the old file is closed by now
    # once a second the statefile names the rotated file by its inode
    wait_for(lambda: re.search(r"^r2 %d 0 " % os.stat(tap.logfile + ".1").st_ino,
                               open(tap.statefile).read(), re.M), timeout=3,
             what="the rotated file in the statefile")


@pytest.mark.parametrize("stop", ["SIGTERM", "kill -9"])
def test_a_file_rotated_during_an_outage_is_read_again_after_a_restart(tap, redis_server, stop):
    rotate_during_an_outage(tap, redis_server, "203.0.113.50", "203.0.113.51")
    if stop == "SIGTERM":
        assert tap.stop() == 0
        tap.wait_log("MG0624: 5 failures not stored")
    else:
        tap.kill()
    redis_server.start()
    tap.start()
    wait_for(lambda: tap.window("dbmail-imap", "203.0.113.50") == 3, timeout=10,
             what="the rotated file's failures")
    wait_for(lambda: tap.window("dbmail-imap", "203.0.113.51") == 2, timeout=10,
             what="the new file's")
    tap.wait_log(r"MG0610: following .*imap\.log\.1 \(rotated away from ")
    time.sleep(0.3)
    assert tap.window("dbmail-imap", "203.0.113.50") == 3
    assert tap.window("dbmail-imap", "203.0.113.51") == 2
    assert tap.stop() == 0
    # all stored: the statefile no longer names it
    assert "\nr2 " not in open(tap.statefile).read()


def test_a_rotated_file_gone_before_the_restart_is_said_once(tap, redis_server):
    rotate_during_an_outage(tap, redis_server, "203.0.113.52", "203.0.113.53")
    assert tap.stop() == 0
    os.unlink(tap.logfile + ".1")       # compressed, say
    redis_server.start()
    tap.start()
    wait_for(lambda: tap.window("dbmail-imap", "203.0.113.53") == 2, timeout=10,
             what="the new file's")
    assert tap.log().count("MG0618: ") == 1
    assert "is gone" in tap.log()
    assert tap.window("dbmail-imap", "203.0.113.52") == 0
    assert tap.stop() == 0


def test_lines_written_before_a_rotation_while_stopped_are_read_from_the_rotated_file(
        tap, redis_server):
    tap.start()
    append(tap.logfile, imap_fail("203.0.113.54"))
    wait_for(lambda: tap.window("dbmail-imap", "203.0.113.54") == 1, what="first run")
    assert tap.stop() == 0
    # while stopped: more lines, then logrotate, then lines in the new file
    append(tap.logfile, imap_fail("203.0.113.54") * 2)
    os.rename(tap.logfile, tap.logfile + ".1")
    append(tap.logfile, imap_fail("203.0.113.55"))
    tap.start()
    wait_for(lambda: tap.window("dbmail-imap", "203.0.113.55") == 1, what="the new file")
    wait_for(lambda: tap.window("dbmail-imap", "203.0.113.54") == 3, what="the old file's tail")
    time.sleep(0.3)
    assert tap.window("dbmail-imap", "203.0.113.54") == 3
    assert tap.stop() == 0


def test_the_ban_made_by_a_batch_whose_answer_was_lost_is_logged_once(tap, redis_server):
    """The fifth failure's batch times out (2 s) behind someone else's
    3 s script but runs once Redis is free, making the ban, and its answer
    is lost.  Sent again it comes back a duplicate that made the live ban:
    dbmail_tap logs that ban then, once, with its five failures."""
    tap.start()
    me = "203.0.113.30"
    append(tap.logfile, imap_fail(me) * 4)
    wait_for(lambda: tap.window("dbmail-imap", me) == 4, what="four failures")
    busy = busy_redis(redis_server, 3.0)
    append(tap.logfile, imap_fail(me))
    busy.join()
    wait_for(lambda: tap.banned(me), timeout=10, what="the ban")
    tap.wait_log("MG0626: 1 failures already counted", timeout=10)
    lines = [l for l in tap.log().splitlines() if "MG0621: Ban %s " % me in l]
    assert len(lines) == 1 and "after 5 failures" in lines[0], lines
    assert "MG0620: Redis unavailable" in tap.log()
    assert tap.history(me) == 1
    assert tap.stop() == 0
