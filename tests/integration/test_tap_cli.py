"""dbmail_tap's command line: every command, its help, and its errors."""
import os
import subprocess
import time

import pytest

from support.tap import TapDaemon


@pytest.fixture
def tap(build_dir, tmp_path, redis_server):
    t = TapDaemon(build_dir, tmp_path, redis_server)
    open(t.logfile, "w").close()
    yield t
    t.kill()


def one_line_error(r, code, needle):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert needle in lines[0], lines[0]


def test_version_and_help(tap):
    r = tap.cli("--version", config=False)
    assert r.returncode == 0 and r.stdout.startswith("dbmail_tap ")
    r = tap.cli("--help", config=False)
    assert r.returncode == 0
    for cmd in ("run", "test", "bans", "ban", "unban", "resync"):
        assert "dbmail_tap %s" % cmd in r.stdout


@pytest.mark.parametrize("cmd,needle", [
    ("run", "usage: dbmail_tap run"),
    ("bans", "usage: dbmail_tap bans"),
    ("ban", "usage: dbmail_tap ban ADDR"),
    ("unban", "usage: dbmail_tap unban"),
    ("resync", "usage: dbmail_tap resync"),
])
def test_every_command_has_help(tap, cmd, needle):
    r = tap.cli(cmd, "--help", config=False)
    assert r.returncode == 0 and needle in r.stdout


def test_unknown_command_or_none_is_a_usage_error(tap):
    r = tap.cli("frobnicate", config=False)
    assert r.returncode == 2 and "unknown command 'frobnicate'" in r.stderr
    assert "usage:" in r.stderr
    r = tap.cli(config=False)
    assert r.returncode == 2 and "usage:" in r.stderr


def test_unknown_option_is_a_usage_error(tap):
    r = tap.cli("bans", "--frob")
    assert r.returncode == 2 and "unknown option" in r.stderr
    r = tap.cli("run", "--frob")
    assert r.returncode == 2 and "unknown option" in r.stderr
    r = tap.cli("run", "--log-level", "loud")
    assert r.returncode == 2 and "unknown log level" in r.stderr


def test_ban_lists_and_unbans_an_address(tap):
    r = tap.cli("ban", "203.0.113.5", "2h")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("banned 203.0.113.5 until ")
    score = float(tap.ban_score("203.0.113.5"))
    assert abs(score - (time.time() + 7200)) < 10
    r = tap.cli("bans")
    assert r.returncode == 0
    row = [l for l in r.stdout.splitlines() if l.startswith("203.0.113.5 ")]
    assert len(row) == 1 and ("1h59m" in row[0] or "2h" in row[0])
    assert "1 live ban" in r.stdout
    r = tap.cli("unban", "203.0.113.5")
    assert r.returncode == 0 and r.stdout.strip() == "unbanned 203.0.113.5"
    assert not tap.banned("203.0.113.5")
    r = tap.cli("unban", "203.0.113.5")
    assert r.returncode == 0 and "was not banned" in r.stdout


def test_ban_without_duration_uses_the_jail_bantime_and_permanent_has_no_end(tap):
    assert tap.cli("ban", "198.51.100.1").returncode == 0
    assert abs(float(tap.ban_score("198.51.100.1")) - (time.time() + 3600)) < 10
    r = tap.cli("ban", "2001:db8:1:2::/64", "permanent")
    assert r.returncode == 0, r.stderr
    assert tap.ban_score("2001:db8:1:2::/64") == "inf"
    r = tap.cli("bans")
    assert "2001:db8:1:2::/64" in r.stdout and "permanent" in r.stdout


def test_ban_canonicalises_what_it_stores(tap):
    assert tap.cli("ban", "::ffff:203.0.113.9", "1m").returncode == 0
    assert tap.banned("203.0.113.9")
    assert tap.cli("ban", "2001:DB8:0:0::7", "1m").returncode == 0
    assert tap.banned("2001:db8::7")


@pytest.mark.parametrize("addr", ["banana", "300.1.1.1", "1.2.3.4/0", "", "1.2.3.4 ", "fe80::1/129"])
def test_ban_refuses_a_bad_address(tap, addr):
    one_line_error(tap.cli("ban", addr, "1h"), 2, "bad address")
    assert tap.redis.cmd("ZCARD", "mailguard:bans") == 0


@pytest.mark.parametrize("dur", ["0", "-5m", "10x", "m", "1h30", "999999999999w"])
def test_ban_refuses_a_bad_duration(tap, dur):
    one_line_error(tap.cli("ban", "203.0.113.5", dur), 2, "bad duration")
    assert tap.redis.cmd("ZCARD", "mailguard:bans") == 0


def test_ban_argument_count(tap):
    one_line_error(tap.cli("ban"), 2, "usage")
    one_line_error(tap.cli("ban", "1.2.3.4", "1h", "extra"), 2, "usage")


def test_unban_all(tap):
    for a in ("203.0.113.1", "203.0.113.2", "2001:db8::/64"):
        assert tap.cli("ban", a, "1h").returncode == 0
    r = tap.cli("unban", "--all")
    assert r.returncode == 0 and r.stdout.strip() == "unbanned 3 addresses"
    assert tap.redis.cmd("ZCARD", "mailguard:bans") == 0


def test_unban_errors(tap):
    one_line_error(tap.cli("unban"), 2, "usage")
    one_line_error(tap.cli("unban", "--all", "1.2.3.4"), 2, "usage")
    one_line_error(tap.cli("unban", "not-an-ip"), 2, "bad address")
    one_line_error(tap.cli("bans", "extra"), 2, "unexpected argument")


def test_resync_tells_every_follower_to_read_the_set_again(tap):
    r = tap.cli("resync")
    assert r.returncode == 0 and r.stdout.strip() == "resync announced"
    entries = tap.redis.cmd("XRANGE", "mailguard:log", "-", "+")
    assert entries[-1][1][entries[-1][1].index("e") + 1] == "resync"
    one_line_error(tap.cli("resync", "now"), 2, "unexpected argument")


def test_bans_lists_a_large_set_in_pages_soonest_first(tap):
    now = int(time.time())
    args = []
    for i in range(2500):
        args += [now + 1000 + i // 3, "10.1.%d.%d" % (i // 250, i % 250)]
    for i in range(0, len(args), 1000):
        tap.redis.cmd("ZADD", "mailguard:bans", *args[i:i + 1000])
    tap.redis.cmd("ZADD", "mailguard:bans", "+inf", "203.0.113.90", "+inf", "203.0.113.91")
    r = tap.cli("bans")
    assert r.returncode == 0, r.stderr
    rows = r.stdout.splitlines()[1:-1]
    assert len(rows) == 2502 and r.stdout.splitlines()[-1] == "2502 live bans"
    assert len(set(x.split()[0] for x in rows)) == 2502       # none twice
    assert rows[-1].split()[2] == "permanent" and rows[-2].split()[2] == "permanent"
    assert rows[0].split()[0] == "10.1.0.0"


def test_bans_hides_expired_members(tap):
    now = int(time.time())
    tap.redis.cmd("ZADD", "mailguard:bans", now - 10, "203.0.113.77")
    tap.redis.cmd("ZADD", "mailguard:bans", now + 600, "203.0.113.78")
    r = tap.cli("bans")
    assert r.returncode == 0
    assert "203.0.113.78" in r.stdout and "203.0.113.77" not in r.stdout


def test_commands_report_an_unreachable_redis_in_one_line(build_dir, tmp_path):
    t = TapDaemon(build_dir, tmp_path, None)
    for args in (("bans",), ("ban", "203.0.113.5", "1h"), ("unban", "203.0.113.5"),
                 ("unban", "--all"), ("resync",)):
        one_line_error(t.cli(*args), 1, "redis")


def test_commands_report_a_missing_or_bad_config(tap):
    r = subprocess.run([tap.binary, "bans", "-c", "/nonexistent/dbmail_tap.conf"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "/nonexistent/dbmail_tap.conf" in r.stderr
    with open(tap.conf, "a") as f:
        f.write("bogus_key = 1\n")
    one_line_error(tap.cli("bans"), 1, "bogus_key")


def test_dash_c_without_a_file_is_a_usage_error(tap):
    one_line_error(tap.cli("bans", "-c", config=False), 2, "-c needs a FILE")


def test_the_shipped_example_config_is_valid(tap, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    text = open(os.path.join(root, "build", "packaging", "dbmail_tap.conf")).read()
    assert "redis = redis://127.0.0.1:6379" in text
    conf = os.path.join(str(tmp_path), "example.conf")
    with open(conf, "w") as f:
        f.write(text.replace("redis://127.0.0.1:6379", tap.redis.url))
    r = subprocess.run([tap.binary, "bans", "-c", conf], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    assert "0 live bans" in r.stdout


def test_the_systemd_unit_runs_the_daemon_in_the_foreground(tap):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    unit = open(os.path.join(root, "build", "packaging", "dbmail-tap.service")).read()
    lines = set(l.strip() for l in unit.splitlines())
    assert "Type=simple" in lines
    # A template: make install fills in /usr/local/sbin, the package
    # /usr/sbin (test_packaging.py checks both).
    assert "ExecStart=@SBINDIR@/dbmail_tap run -c @CONFDIR@/dbmail_tap.conf" in lines
    assert "ExecReload=/bin/kill -HUP $MAINPID" in lines
    assert "NoNewPrivileges=yes" in lines and "ProtectSystem=strict" in lines
    assert "StateDirectory=dbmail_tap" in lines   # the default statefile's directory
