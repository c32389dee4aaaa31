"""dbmail_tap run: counting failed IMAP/POP3 logins from real log files into
a real redis-server, as an administrator would describe the behaviour."""
import os
import signal
import time

import pytest

from support.tap import (TapDaemon, append, imap_fail, noise, pop3_fail,
                         wait_for)


@pytest.fixture
def tap(build_dir, tmp_path, redis_server):
    t = TapDaemon(build_dir, tmp_path, redis_server)
    open(t.logfile, "w").close()
    yield t
    t.kill()


def test_maxretry_minus_one_failures_do_not_ban_the_next_one_does(tap):
    tap.start()
    for _ in range(2):
        append(tap.logfile, imap_fail("203.0.113.5"))
    wait_for(lambda: tap.window("dbmail-imap", "203.0.113.5") == 2, what="2 failures")
    time.sleep(0.2)
    assert not tap.banned("203.0.113.5")
    append(tap.logfile, imap_fail("203.0.113.5"))
    score = wait_for(lambda: tap.ban_score("203.0.113.5"), what="ban")
    assert abs(float(score) - (time.time() + 3600)) < 10
    assert tap.history("203.0.113.5") == 1
    tap.wait_log(r"MG0621: Ban 203\.0\.113\.5 \[dbmail-imap\] after 3 failures")
    assert tap.stop() == 0


def test_pop3_failures_count_in_their_own_jail(build_dir, tmp_path, redis_server):
    t = TapDaemon(build_dir, tmp_path, redis_server, jails={
        "dbmail-imap": {"filter": "dbmail-imap", "logpath": os.path.join(str(tmp_path), "x.log")},
        "dbmail-pop3": {"filter": "dbmail-pop3", "logpath": os.path.join(str(tmp_path), "x.log")},
    })
    log = os.path.join(str(tmp_path), "x.log")
    open(log, "w").close()
    try:
        t.start()
        append(log, pop3_fail("198.51.100.7") + imap_fail("198.51.100.7"))
        wait_for(lambda: t.window("dbmail-pop3", "198.51.100.7") == 1, what="pop3 count")
        wait_for(lambda: t.window("dbmail-imap", "198.51.100.7") == 1, what="imap count")
        assert t.stop() == 0
    finally:
        t.kill()


def test_ignoreip_addresses_are_never_counted(tap):
    tap.default["ignoreip"] = "127.0.0.1/8 ::1 192.0.2.0/24 2001:db8:aaaa::/48"
    tap.write_config()
    tap.start()
    for _ in range(5):
        append(tap.logfile, imap_fail("192.0.2.77") + imap_fail("2001:db8:aaaa:1::9")
               + imap_fail("127.0.0.1") + imap_fail("::1"))
    append(tap.logfile, imap_fail("203.0.113.9"))
    wait_for(lambda: tap.window("dbmail-imap", "203.0.113.9") == 1, what="control address")
    assert tap.window("dbmail-imap", "192.0.2.77") == 0
    assert tap.window("dbmail-imap", "2001:db8:aaaa:1::") == 0
    assert tap.redis.cmd("ZCARD", "mailguard:bans") == 0
    assert tap.stop() == 0
    assert "20 ignored by ignoreip" in tap.log()


def test_ipv6_clients_count_and_ban_by_their_64(tap):
    tap.start()
    append(tap.logfile, imap_fail("2001:db8:1:2::5", port=40000))
    append(tap.logfile, imap_fail("2001:db8:1:2:aaaa::6"))
    append(tap.logfile, imap_fail("2001:db8:1:2:ffff:ffff:ffff:ffff"))
    wait_for(lambda: tap.banned("2001:db8:1:2::/64"), what="/64 ban")
    assert not tap.banned("2001:db8:1:2::5")
    assert tap.stop() == 0


def test_ipv4_mapped_clients_count_as_ipv4(tap):
    tap.start()
    for _ in range(3):
        append(tap.logfile, imap_fail("::ffff:203.0.113.44"))
    wait_for(lambda: tap.banned("203.0.113.44"), what="mapped ban")
    assert tap.stop() == 0


def test_a_username_cannot_frame_another_address(tap):
    tap.start()
    evil = "x] from [203.0.113.66:1"
    for _ in range(3):
        append(tap.logfile, imap_fail("198.51.100.20", user=evil))
    wait_for(lambda: tap.banned("198.51.100.20"), what="real address banned")
    assert not tap.banned("203.0.113.66")
    assert tap.window("dbmail-imap", "203.0.113.66") == 0
    assert tap.stop() == 0


def test_a_partial_line_counts_when_its_newline_arrives(tap):
    tap.start()
    line = imap_fail("203.0.113.50")
    append(tap.logfile, line[:40])
    time.sleep(0.3)
    append(tap.logfile, line[40:-1])
    time.sleep(0.3)
    assert tap.window("dbmail-imap", "203.0.113.50") == 0
    append(tap.logfile, "\n")
    wait_for(lambda: tap.window("dbmail-imap", "203.0.113.50") == 1, what="completed line")
    assert tap.stop() == 0


def test_lines_longer_than_64k_are_skipped_and_counted(tap):
    tap.start()
    giant = "A" * 70000 + imap_fail("203.0.113.61")
    append(tap.logfile, giant[:30000])
    append(tap.logfile, giant[30000:])
    append(tap.logfile, imap_fail("203.0.113.62"))
    wait_for(lambda: tap.window("dbmail-imap", "203.0.113.62") == 1, what="next line counted")
    assert tap.window("dbmail-imap", "203.0.113.61") == 0
    tap.wait_log(r"MG0614: .*skipped a line longer than 65536 bytes \(1 so far\)")
    assert tap.stop() == 0
    assert "1 long lines skipped" in tap.log()


def test_a_file_never_seen_is_read_from_its_end(tap):
    append(tap.logfile, imap_fail("203.0.113.70") * 5)
    tap.start()
    append(tap.logfile, imap_fail("203.0.113.71"))
    wait_for(lambda: tap.window("dbmail-imap", "203.0.113.71") == 1, what="new line")
    assert tap.window("dbmail-imap", "203.0.113.70") == 0
    assert tap.stop() == 0


def test_a_file_missing_at_start_is_read_from_its_beginning_when_it_appears(tap):
    os.unlink(tap.logfile)
    tap.start()
    tap.wait_log(r"MG0611: .*imap\.log")
    append(tap.logfile, imap_fail("203.0.113.80") * 2)
    wait_for(lambda: tap.window("dbmail-imap", "203.0.113.80") == 2, what="both lines")
    assert tap.stop() == 0


def test_polling_mode_follows_without_inotify(tap):
    tap.start("--poll")
    append(tap.logfile, imap_fail("203.0.113.90"))
    wait_for(lambda: tap.window("dbmail-imap", "203.0.113.90") == 1, timeout=3, what="polled line")
    assert tap.stop() == 0


def test_noise_lines_are_not_counted(tap):
    tap.start()
    append(tap.logfile, "".join(noise(i) for i in range(1000)) + "garbage \x00\xff\n" * 3)
    append(tap.logfile, imap_fail("203.0.113.91"))
    wait_for(lambda: tap.window("dbmail-imap", "203.0.113.91") == 1, what="failure")
    keys = tap.redis.cmd("KEYS", "mailguard:fail:*")
    assert keys == ["mailguard:fail:dbmail-imap:203.0.113.91"]
    assert tap.stop() == 0


def test_sigterm_flushes_and_exits_0(tap):
    tap.start()
    append(tap.logfile, "".join(imap_fail("10.9.%d.%d" % (i // 250, i % 250)) for i in range(2000)))
    # Stop as soon as the lines are there: what was read must reach Redis.
    wait_for(lambda: "10.9.7.249" in open(tap.logfile).read(), what="written")
    time.sleep(0.05)
    assert tap.stop(signal.SIGTERM) == 0
    n = sum(1 for k in tap.redis.cmd("KEYS", "mailguard:fail:dbmail-imap:10.9.*"))
    # everything read was stored; nothing read twice at the next start
    assert n == 2000
    assert "MG0602: stopping" in tap.log()


def test_sigint_also_exits_0(tap):
    tap.start()
    assert tap.stop(signal.SIGINT) == 0


def test_sighup_reopens_the_files(tap):
    tap.start()
    append(tap.logfile, imap_fail("203.0.113.100"))
    wait_for(lambda: tap.window("dbmail-imap", "203.0.113.100") == 1, what="before HUP")
    tap.send(signal.SIGHUP)
    tap.wait_log("MG0601: SIGHUP")
    append(tap.logfile, imap_fail("203.0.113.100"))
    wait_for(lambda: tap.window("dbmail-imap", "203.0.113.100") == 2, what="after HUP, no re-read")
    time.sleep(0.3)
    assert tap.window("dbmail-imap", "203.0.113.100") == 2
    assert tap.proc.poll() is None
    assert tap.stop() == 0


def test_a_bad_config_stops_the_daemon_with_the_line_named(tap):
    with open(tap.conf, "a") as f:
        f.write("maxretry = lots\n")
    r = tap.cli("run", config=True)
    assert r.returncode == 1
    assert "maxretry" in r.stderr and tap.conf in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_failure_to_ban_latency_is_a_few_milliseconds(tap):
    tap.start()
    lat = []
    for i in range(20):
        addr = "203.0.114.%d" % i
        append(tap.logfile, imap_fail(addr) * 2)
        wait_for(lambda: tap.window("dbmail-imap", addr) == 2, what="pre")
        t0 = time.monotonic()
        append(tap.logfile, imap_fail(addr))
        wait_for(lambda: tap.banned(addr), interval=0.0005, what="ban")
        lat.append(time.monotonic() - t0)
    lat.sort()
    assert lat[len(lat) // 2] < 0.05, lat
    assert tap.stop() == 0
