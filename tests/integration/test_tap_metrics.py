"""dbmail_tap's metrics file (metrics_file =): node_exporter's textfile
collector reads it, so it must always be a whole, valid exposition file
with the exact counts of what the daemon read, stored and banned."""
import os
import stat
import time

import pytest

from support.mailguard import ban_from_elsewhere
from support.promtext import parse, promtool, promtool_check, value
from support.tap import TapDaemon, append, imap_fail, noise, pop3_fail, wait_for

POSTFIX = ("Nov 26 10:00:01 mail postfix/smtpd[4242]: warning: non-SMTP command from "
           "unknown[198.51.100.3]: login rejected: user [x] from [203.0.113.9:1]\n")

JAIL_FAMILIES = ("mailguard_tap_lines_read_total", "mailguard_tap_lines_matched_total",
                 "mailguard_tap_lines_ignored_total", "mailguard_tap_lines_suspicious_total",
                 "mailguard_tap_lines_missed_total", "mailguard_tap_failures_ignoreip_total",
                 "mailguard_tap_failures_stored_total", "mailguard_tap_failures_duplicate_total",
                 "mailguard_tap_bans_total")


def read_metrics(path):
    """The file through the strict reader (and promtool when installed)."""
    with open(path) as f:
        text = f.read()
    fams = parse(text)
    tool = promtool()
    if tool is not None:
        ok, out = promtool_check(text, tool)
        assert ok, out
    return fams


def metrics_or_none(path):
    try:
        return read_metrics(path)
    except FileNotFoundError:
        return None


def jail_values(fams, jail):
    return {f: value(fams, f, jail=jail) for f in JAIL_FAMILIES}


@pytest.fixture
def mtap(build_dir, tmp_path, redis_server):
    """Two jails on one log (each reads every line of it), an ignoreregex
    in the IMAP jail and a metrics file."""
    log = os.path.join(str(tmp_path), "mail.log")
    open(log, "w").close()
    t = TapDaemon(build_dir, tmp_path, redis_server, jails={
        "dbmail-imap": {"filter": "dbmail-imap", "logpath": log,
                        "ignoreregex": r"user \[ignoreme\]"},
        "dbmail-pop3": {"filter": "dbmail-pop3", "logpath": log},
    })
    t.logfile = log
    t.metrics = os.path.join(t.dir, "prom", "dbmail_tap.prom")
    os.makedirs(os.path.dirname(t.metrics))
    t.default["metrics_file"] = t.metrics
    t.write_config()
    yield t
    t.kill()


SCENARIO_LINES = 15


def scenario(t):
    """15 lines of one file, judged by both jails (maxretry 3)."""
    text = (imap_fail("203.0.113.10") * 3            # imap: a ban
            + imap_fail("203.0.113.11")              # imap: one failure
            + imap_fail("203.0.113.12", user="ignoreme")   # imap: ignoreregex
            + imap_fail("127.0.0.5")                 # imap: ignoreip
            + pop3_fail("198.51.100.20") * 3         # pop3: a ban
            + POSTFIX                                # imap: suspicious
            + "".join(noise(i) for i in range(5)))   # missed by both
    assert text.count("\n") == SCENARIO_LINES
    append(t.logfile, text)


IMAP_EXPECT = {
    "mailguard_tap_lines_read_total": 15,
    "mailguard_tap_lines_matched_total": 5,      # 3 + 1 + the ignoreip one
    "mailguard_tap_lines_ignored_total": 1,
    "mailguard_tap_lines_suspicious_total": 1,
    "mailguard_tap_lines_missed_total": 8,       # 3 POP3 lines + 5 noise
    "mailguard_tap_failures_ignoreip_total": 1,
    "mailguard_tap_failures_stored_total": 4,
    "mailguard_tap_failures_duplicate_total": 0,
    "mailguard_tap_bans_total": 1,
}
POP3_EXPECT = {
    "mailguard_tap_lines_read_total": 15,
    "mailguard_tap_lines_matched_total": 3,
    "mailguard_tap_lines_ignored_total": 0,
    "mailguard_tap_lines_suspicious_total": 0,
    "mailguard_tap_lines_missed_total": 12,
    "mailguard_tap_failures_ignoreip_total": 0,
    "mailguard_tap_failures_stored_total": 3,
    "mailguard_tap_failures_duplicate_total": 0,
    "mailguard_tap_bans_total": 1,
}


def test_the_metrics_file_counts_lines_failures_and_bans_per_jail_exactly(mtap):
    mtap.start()
    # written at start: running, nothing counted yet
    fams = wait_for(lambda: metrics_or_none(mtap.metrics), what="metrics file at start")
    assert value(fams, "mailguard_tap_running") == 1
    assert abs(value(fams, "mailguard_tap_start_time_seconds") - time.time()) < 10
    for jail in ("dbmail-imap", "dbmail-pop3"):
        assert all(v == 0 for v in jail_values(fams, jail).values()), jail
    assert stat.S_IMODE(os.stat(mtap.metrics).st_mode) == 0o644
    scenario(mtap)
    append(mtap.logfile, "A" * 70000 + "\n")         # skipped, counted daemon-wide
    wait_for(lambda: mtap.banned("203.0.113.10") and mtap.banned("198.51.100.20"),
             what="both bans")
    # the periodic write (every 5 s) brings the counts while it runs
    fams = wait_for(lambda: (lambda f: f if value(f, "mailguard_tap_bans_total",
                                                  jail="dbmail-pop3") == 1 else None)(
        read_metrics(mtap.metrics)), timeout=8, interval=0.2, what="periodic write")
    assert jail_values(fams, "dbmail-imap") == IMAP_EXPECT
    assert jail_values(fams, "dbmail-pop3") == POP3_EXPECT
    assert value(fams, "mailguard_tap_running") == 1
    assert mtap.stop() == 0
    # at exit: the same counts, and running 0
    fams = read_metrics(mtap.metrics)
    assert jail_values(fams, "dbmail-imap") == IMAP_EXPECT
    assert jail_values(fams, "dbmail-pop3") == POP3_EXPECT
    daemon = {
        "mailguard_tap_running": 0,
        "mailguard_tap_queue_length": 0,
        "mailguard_tap_queue_capacity": 1048576,
        "mailguard_tap_queue_dropped_total": 0,
        "mailguard_tap_redis_up": 1,
        "mailguard_tap_writer_failed_rounds_total": 0,
        "mailguard_tap_files_followed": 1,
        "mailguard_tap_files_open": 1,
        "mailguard_tap_lines_too_long_total": 1,
    }
    for fam, want in daemon.items():
        assert value(fams, fam) == want, (fam, value(fams, fam), want)
    assert value(fams, "mailguard_tap_banaction", banaction="none") == 1
    assert value(fams, "mailguard_tap_banaction", banaction="nftables") == 0
    # without a firewall keeper, no keeper families
    assert not [f for f in fams if f.startswith("mailguard_tap_firewall_")]
    # the Redis windows agree with what the file says was stored
    assert mtap.window("dbmail-imap", "203.0.113.11") == 1
    assert mtap.window("dbmail-imap", "203.0.113.12") == 0
    # nothing but the file is left in its directory (no temporary file)
    assert os.listdir(os.path.dirname(mtap.metrics)) == ["dbmail_tap.prom"]
    # the stop line and the file say the same
    assert "15 lines, 7 failures, 1 ignored by ignoreip, 1 suspicious" in mtap.log()


def test_an_outage_shows_in_the_metrics_and_nothing_is_counted_twice(mtap, redis_server):
    mtap.start()
    redis_server.stop()
    append(mtap.logfile, imap_fail("203.0.113.30") * 2)
    mtap.wait_log("MG0620: Redis unavailable")
    fams = wait_for(lambda: (lambda f: f if f and value(f, "mailguard_tap_redis_up") == 0
                             else None)(metrics_or_none(mtap.metrics)),
                    timeout=8, interval=0.2, what="redis down in the file")
    assert value(fams, "mailguard_tap_queue_length") == 2
    assert value(fams, "mailguard_tap_failures_stored_total", jail="dbmail-imap") == 0
    assert value(fams, "mailguard_tap_writer_failed_rounds_total") >= 1
    redis_server.start()
    wait_for(lambda: mtap.window("dbmail-imap", "203.0.113.30") == 2, timeout=10,
             what="queued failures stored")
    assert mtap.stop() == 0
    fams = read_metrics(mtap.metrics)
    assert value(fams, "mailguard_tap_redis_up") == 1
    assert value(fams, "mailguard_tap_queue_length") == 0
    assert value(fams, "mailguard_tap_failures_stored_total", jail="dbmail-imap") == 2


FAKE_NFT = """#!/bin/sh
# a stand-in for nft: reads its script, fails while {fail} exists
cat > /dev/null
[ -e "{fail}" ] && exit 1
exit 0
"""


def test_the_firewall_keeper_reports_its_state_and_failed_updates(build_dir, tmp_path,
                                                                   redis_server):
    fake = os.path.join(str(tmp_path), "nft")
    failflag = os.path.join(str(tmp_path), "nft.fail")
    with open(fake, "w") as f:
        f.write(FAKE_NFT.format(fail=failflag))
    os.chmod(fake, stat.S_IRWXU)
    t = TapDaemon(build_dir, tmp_path, redis_server, banaction="nftables")
    t.metrics = os.path.join(t.dir, "dbmail_tap.prom")
    t.default["metrics_file"] = t.metrics
    t.write_config()
    open(t.logfile, "w").close()
    try:
        t.start(env={"DBMAIL_TAP_NFT": fake})
        t.wait_log("MG0642: firewall holds the ban set")
        fams = wait_for(lambda: (lambda f: f if f and value(
            f, "mailguard_tap_firewall_in_step") == 1 else None)(metrics_or_none(t.metrics)),
            timeout=8, interval=0.2, what="keeper in step in the file")
        assert value(fams, "mailguard_tap_banaction", banaction="nftables") == 1
        assert value(fams, "mailguard_tap_firewall_redis_up") == 1
        assert value(fams, "mailguard_tap_firewall_failures_total") == 0
        assert value(fams, "mailguard_tap_firewall_snapshots_total") >= 1
        assert abs(value(fams, "mailguard_tap_firewall_last_check_timestamp_seconds")
                   - time.time()) < 10
        snaps = value(fams, "mailguard_tap_firewall_snapshots_total")
        applied = value(fams, "mailguard_tap_firewall_changes_applied_total")
        # one ban from the log, one from elsewhere: two changes applied
        for _ in range(3):
            append(t.logfile, imap_fail("203.0.113.40"))
        wait_for(lambda: t.banned("203.0.113.40"), what="ban")
        ban_from_elsewhere(redis_server, "198.51.100.41", int(time.time()) + 600,
                           jail="webmail")
        fams = wait_for(lambda: (lambda f: f if value(
            f, "mailguard_tap_firewall_changes_applied_total") >= applied + 2 else None)(
            read_metrics(t.metrics)), timeout=8, interval=0.2, what="changes applied")
        assert value(fams, "mailguard_tap_firewall_changes_applied_total") == applied + 2
        assert value(fams, "mailguard_tap_firewall_snapshots_total") == snaps
        assert value(fams, "mailguard_tap_firewall_bans_live_in_redis") in (1, 2)
        # the firewall command starts failing: counted, never fatal
        open(failflag, "w").close()
        ban_from_elsewhere(redis_server, "198.51.100.42", int(time.time()) + 600,
                           jail="webmail")
        t.wait_log("MG0640: ")
        fams = wait_for(lambda: (lambda f: f if value(
            f, "mailguard_tap_firewall_failures_total") >= 1 else None)(
            read_metrics(t.metrics)), timeout=8, interval=0.2, what="failure counted")
        assert t.proc.poll() is None
        assert t.stop() == 0
        fams = read_metrics(t.metrics)
        assert value(fams, "mailguard_tap_running") == 0
        assert value(fams, "mailguard_tap_firewall_failures_total") == t.log().count("MG0640")
    finally:
        t.kill()


def test_an_unwritable_metrics_file_is_logged_once_and_never_stops_reading(mtap):
    os.rmdir(os.path.dirname(mtap.metrics))          # its directory is gone
    mtap.start()
    mtap.wait_log("MG0634: cannot write the metrics file")
    append(mtap.logfile, imap_fail("203.0.113.50"))
    wait_for(lambda: mtap.window("dbmail-imap", "203.0.113.50") == 1, what="still counting")
    # the directory comes back: the next write works and says so
    os.makedirs(os.path.dirname(mtap.metrics))
    mtap.wait_log("MG0635: metrics file .* written again", timeout=8)
    assert mtap.log().count("MG0634") == 1
    assert mtap.stop() == 0
    fams = read_metrics(mtap.metrics)
    assert value(fams, "mailguard_tap_failures_stored_total", jail="dbmail-imap") == 1


def test_a_symlink_planted_at_the_temporary_name_is_not_followed(mtap):
    victim = os.path.join(mtap.dir, "victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    os.symlink(victim, mtap.metrics + ".tmp")
    mtap.start()
    wait_for(lambda: metrics_or_none(mtap.metrics), what="metrics file")
    assert mtap.stop() == 0
    with open(victim) as f:
        assert f.read() == "precious\n"
    assert not os.path.islink(mtap.metrics) and not os.path.exists(mtap.metrics + ".tmp")
    assert value(read_metrics(mtap.metrics), "mailguard_tap_running") == 0


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("with_file", [False, True])
def test_an_idle_daemon_sleeps_with_or_without_a_metrics_file(build_dir, tmp_path,
                                                              redis_server, with_file):
    t = TapDaemon(build_dir, tmp_path, redis_server)
    if with_file:
        t.default["metrics_file"] = os.path.join(t.dir, "dbmail_tap.prom")
        t.write_config()
    open(t.logfile, "w").close()
    try:
        t.start()
        append(t.logfile, imap_fail("203.0.113.60"))
        wait_for(lambda: t.window("dbmail-imap", "203.0.113.60") == 1, what="counted")
        # past the metrics interval: its timer must not spin the poll loop
        before = cpu_seconds(t.proc.pid)
        time.sleep(6)
        assert cpu_seconds(t.proc.pid) - before < 0.5
        assert t.stop() == 0
        written = [n for n in os.listdir(t.dir) if n.endswith((".prom", ".tmp"))]
        assert written == (["dbmail_tap.prom"] if with_file else [])
    finally:
        t.kill()


@pytest.mark.parametrize("val, why", [
    ("metrics.prom", "not an absolute path"),
    ("/var/lib/x y.prom", "no spaces or control characters"),
    ("/var/lib/node-exporter/", "names a directory"),
    ("/var/lib/node-exporter/..", "names a directory"),
    ("", "not an absolute path"),
])
def test_a_bad_metrics_file_stops_the_daemon_with_the_line_named(mtap, val, why):
    mtap.default["metrics_file"] = val
    mtap.write_config()
    line = [i for i, l in enumerate(open(mtap.conf).read().splitlines(), 1)
            if l.startswith("metrics_file")][0]
    r = mtap.cli("run", config=True)
    assert r.returncode == 1
    assert "%s:%d: metrics_file: %s" % (mtap.conf, line, why) in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_metrics_file_belongs_in_default_and_is_not_the_statefile(mtap):
    mtap.default["metrics_file"] = mtap.statefile
    mtap.write_config()
    r = mtap.cli("run", config=True)
    assert r.returncode == 1 and "metrics_file: the same file as statefile" in r.stderr
    del mtap.default["metrics_file"]
    mtap.jails["dbmail-pop3"]["metrics_file"] = "/tmp/x.prom"
    mtap.write_config()
    r = mtap.cli("run", config=True)
    assert r.returncode == 1
    assert "metrics_file: only valid in [DEFAULT]" in r.stderr, r.stderr


def test_lines_read_again_are_duplicates_not_new_failures(mtap):
    """A statefile that points back (a restore from backup, a crash before
    it was written): the lines are read again, Redis recognises each by
    its identity and the file counts them as duplicates, not failures."""
    mtap.start()
    append(mtap.logfile, imap_fail("203.0.113.40") * 2)
    wait_for(lambda: mtap.window("dbmail-imap", "203.0.113.40") == 2, what="two failures")
    assert mtap.stop() == 0
    with open(mtap.statefile) as f:
        lines = [l for l in f.read().splitlines() if not l.startswith("#")]
    assert len(lines) == 1 and lines[0].startswith("v1 "), lines
    fields = lines[0].split(" ", 4)       # v1 INODE OFFSET HASH PATH
    assert int(fields[2]) > 0
    fields[2] = "0"
    with open(mtap.statefile, "w") as f:
        f.write(" ".join(fields) + "\n")
    mtap.start()
    mtap.wait_log("MG0626: ")
    assert mtap.stop() == 0
    fams = read_metrics(mtap.metrics)
    assert value(fams, "mailguard_tap_failures_duplicate_total", jail="dbmail-imap") == 2
    assert value(fams, "mailguard_tap_failures_stored_total", jail="dbmail-imap") == 0
    assert mtap.window("dbmail-imap", "203.0.113.40") == 2
