"""banaction: every live ban of the shared set, the webmail module's too,
reaches the host firewall; a failing firewall command is never fatal.

The nftables tests run the daemon inside a network namespace they create,
so the host's own firewall is never touched.  Redis listens on a unix
socket as well, which the namespaced daemon reaches through the file
system (a namespace has its own loopback)."""
import os
import re
import secrets
import shutil
import stat
import subprocess
import time

import pytest

from support.mailguard import ban_from_elsewhere, unban_from_elsewhere
from support.tap import TapDaemon, UnixRedisServer, append, imap_fail, wait_for

IP = shutil.which("ip") or "/usr/sbin/ip"
NFT = shutil.which("nft") or "/usr/sbin/nft"


def netns_or_skip():
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root")
    if not os.path.exists(IP) or not os.path.exists(NFT):
        pytest.skip("ip (iproute2) or nft (nftables) is not installed")
    name = "mgtest-" + secrets.token_hex(4)
    r = subprocess.run([IP, "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot create a network namespace here: " + r.stderr.strip())
    subprocess.run([IP, "netns", "exec", name, IP, "link", "set", "lo", "up"], check=True)
    r = subprocess.run([IP, "netns", "exec", name, NFT, "list", "tables"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        subprocess.run([IP, "netns", "del", name])
        pytest.skip("nftables does not work in a namespace here: " + r.stderr.strip())
    return name


@pytest.fixture
def netns():
    name = netns_or_skip()
    yield name
    subprocess.run([IP, "netns", "del", name], check=False)


@pytest.fixture
def uredis(tmp_path):
    srv = UnixRedisServer(tmp_path).start()
    yield srv
    srv.stop()


@pytest.fixture
def nft_tap(build_dir, tmp_path, uredis, netns):
    t = TapDaemon(build_dir, tmp_path, uredis, banaction="nftables",
                  default={"port": "143,993,110,995,4190"})
    open(t.logfile, "w").close()
    t.netns = netns
    yield t
    t.kill()


def nft_table(ns):
    r = subprocess.run([IP, "netns", "exec", ns, NFT, "list", "table", "inet", "mailguard"],
                       capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else ""


def start_in_ns(t):
    t.start(wrapper=[IP, "netns", "exec", t.netns])
    wait_for(lambda: "chain input" in nft_table(t.netns), 5, what="table created")


def test_nftables_table_holds_sets_and_the_drop_rule(nft_tap, uredis):
    start_in_ns(nft_tap)
    text = nft_table(nft_tap.netns)
    for s in ("set v4 ", "set v6 "):
        assert s in text
    assert "flags timeout" in text and "interval" not in text
    assert "tcp dport { 110, 143, 993, 995, 4190 } ip saddr @v4 drop" in text
    assert "ip6 saddr @v6 drop" in text
    # a prefix length gets its set and a rule matching the masked source
    ban_from_elsewhere(uredis, "198.51.100.0/24", time.time() + 600)
    ban_from_elsewhere(uredis, "2001:db8:77::/48", time.time() + 600)
    wait_for(lambda: "set v6_48 " in nft_table(nft_tap.netns), 5, what="prefix sets")
    text = nft_table(nft_tap.netns)
    assert "ip saddr & 255.255.255.0 == @v4_24 drop" in text
    assert "ip6 saddr & ffff:ffff:ffff:: == @v6_48 drop" in text
    assert "198.51.100.0 timeout" in text and "2001:db8:77:: timeout" in text
    # the host's own ruleset is untouched
    host = subprocess.run([NFT, "list", "tables"], capture_output=True, text=True).stdout
    assert "mailguard" not in host
    assert nft_tap.stop() == 0
    # leaving keeps the rules: bans stay enforced
    assert "chain input" in nft_table(nft_tap.netns)


def test_a_ban_from_the_log_reaches_nftables_with_its_timeout(nft_tap):
    start_in_ns(nft_tap)
    for _ in range(3):
        append(nft_tap.logfile, imap_fail("203.0.113.5"))
    wait_for(lambda: "203.0.113.5 timeout" in nft_table(nft_tap.netns), 5, what="element")
    text = nft_table(nft_tap.netns)
    assert "timeout 1h" in text or "timeout 59m" in text
    for _ in range(3):
        append(nft_tap.logfile, imap_fail("2001:db8:1:2::5"))
    wait_for(lambda: "2001:db8:1:2:: timeout" in nft_table(nft_tap.netns), 5, what="v6 prefix")
    assert "set v6_64 " in nft_table(nft_tap.netns)
    assert nft_tap.stop() == 0


def test_a_webmail_ban_made_in_redis_reaches_nftables_at_once(nft_tap, uredis):
    start_in_ns(nft_tap)
    expiry = int(time.time()) + 600
    t0 = time.monotonic()
    ban_from_elsewhere(uredis, "198.51.100.9", expiry, jail="webmail")
    wait_for(lambda: "198.51.100.9" in nft_table(nft_tap.netns), 5, what="change applied")
    assert time.monotonic() - t0 < 1
    ban_from_elsewhere(uredis, "198.51.100.10", float("inf"), jail="webmail")
    wait_for(lambda: "198.51.100.10" in nft_table(nft_tap.netns), 5, what="permanent")
    line = [l for l in nft_table(nft_tap.netns).splitlines() if "198.51.100.10" in l][0]
    assert "198.51.100.10 timeout" not in line
    unban_from_elsewhere(uredis, "198.51.100.9")
    wait_for(lambda: "198.51.100.9 " not in nft_table(nft_tap.netns)
             and "198.51.100.9," not in nft_table(nft_tap.netns), 5, what="unban applied")
    assert nft_tap.stop() == 0


def test_bans_already_in_redis_and_bare_zrems_are_picked_up(nft_tap, uredis):
    expiry = int(time.time()) + 600
    uredis.cmd("ZADD", "mailguard:bans", expiry, "192.0.2.50", expiry, "2001:db8:9::/48",
               int(time.time()) - 5, "192.0.2.51")
    start_in_ns(nft_tap)
    wait_for(lambda: "192.0.2.50" in nft_table(nft_tap.netns), 5, what="initial sync")
    text = nft_table(nft_tap.netns)
    assert "192.0.2.51" not in text
    assert "2001:db8:9:: timeout" in text
    uredis.cmd("ZREM", "mailguard:bans", "192.0.2.50")     # a hand edit, no script
    wait_for(lambda: "192.0.2.50" not in nft_table(nft_tap.netns), 10, what="resync removal")
    assert nft_tap.stop() == 0


def test_an_nft_table_flushed_by_hand_is_rebuilt_after_a_failed_update(nft_tap, uredis):
    start_in_ns(nft_tap)
    subprocess.run([IP, "netns", "exec", nft_tap.netns, NFT, "delete", "table", "inet",
                    "mailguard"], check=True)
    expiry = int(time.time()) + 600
    ban_from_elsewhere(uredis, "198.51.100.30", expiry, jail="webmail")
    nft_tap.wait_log("MG0640: .*nft", timeout=5)
    wait_for(lambda: "198.51.100.30" in nft_table(nft_tap.netns), 10, what="rebuilt")
    assert nft_tap.proc.poll() is None
    assert nft_tap.stop() == 0


def test_a_failing_firewall_command_is_logged_and_retried_never_fatal(build_dir, tmp_path,
                                                                      redis_server):
    t = TapDaemon(build_dir, tmp_path, redis_server, banaction="nftables")
    open(t.logfile, "w").close()
    try:
        t.start(env={"DBMAIL_TAP_NFT": "/bin/false"})
        t.wait_log("MG0640: /bin/false -f failed", timeout=5)
        for _ in range(3):
            append(t.logfile, imap_fail("203.0.113.99"))
        wait_for(lambda: t.banned("203.0.113.99"), what="bans still reach Redis")
        time.sleep(1.5)
        assert t.log().count("MG0640") >= 2     # tried again, after a back-off
        assert t.proc.poll() is None
        assert t.stop() == 0
    finally:
        t.kill()


FAKE_IPFW = """#!/bin/sh
# records each call; 'destroy' and 'delete RULE' of what is not there fail
echo "$*" >> "{log}"
case "$*" in *destroy*|"-q delete 10000") exit 1;; esac
exit 0
"""


def test_ipfw_action_builds_the_table_the_rule_and_entries(build_dir, tmp_path, redis_server):
    """ipfw does not exist on Linux: a recording stand-in checks the exact
    argument vectors the action runs (no shell is involved)."""
    calls = os.path.join(str(tmp_path), "ipfw.calls")
    fake = os.path.join(str(tmp_path), "ipfw")
    with open(fake, "w") as f:
        f.write(FAKE_IPFW.format(log=calls))
    os.chmod(fake, stat.S_IRWXU)
    t = TapDaemon(build_dir, tmp_path, redis_server, banaction="ipfw",
                  default={"port": "143,993"})
    open(t.logfile, "w").close()
    expiry = int(time.time()) + 600
    redis_server.cmd("ZADD", "mailguard:bans", expiry, "192.0.2.7")
    try:
        t.start(env={"DBMAIL_TAP_IPFW": fake})
        wait_for(lambda: os.path.exists(calls)
                 and "-q add 10000 deny tcp from table(mailguard) to any dst-port 143,993"
                 in open(calls).read(), 5, what="rule")
        text = open(calls).read().splitlines()
        assert text.index("-q table mailguard create type addr") \
            < text.index("-q table mailguard add 192.0.2.7")
        for _ in range(3):
            append(t.logfile, imap_fail("2001:db8:5:6::1"))
        wait_for(lambda: "-q table mailguard add 2001:db8:5:6::/64" in open(calls).read(),
                 5, what="event entry")
        unban_from_elsewhere(redis_server, "192.0.2.7")
        wait_for(lambda: "-q table mailguard delete 192.0.2.7" in open(calls).read(),
                 5, what="delete")
        assert t.stop() == 0
    finally:
        t.kill()


def test_ipv4_and_ipv6_prefix_bans_both_survive_a_full_rebuild(nft_tap, uredis):
    """Once, a ::/64 ban made the full rebuild skip IPv4 prefix bans (one
    'covered' test across families).  Prefixes now live in one plain set
    per family and length: nothing is skipped."""
    expiry = time.time() + 600
    for member in ("::/64", "2001:db8:5::/64", "198.51.100.0/24", "192.0.2.0/28"):
        ban_from_elsewhere(uredis, member, expiry)
    start_in_ns(nft_tap)          # the first thing it does: write the whole set
    wait_for(lambda: "192.0.2.0 timeout" in nft_table(nft_tap.netns), 5, what="rebuild")
    text = nft_table(nft_tap.netns)
    assert "198.51.100.0 timeout" in text and "set v4_24 " in text
    assert "192.0.2.0 timeout" in text and "set v4_28 " in text
    assert "2001:db8:5:: timeout" in text and "set v6_64 " in text
    assert ":: timeout" in text
    assert nft_tap.stop() == 0


def test_prefixfloor_decides_how_wide_a_ban_reaches_the_firewall(build_dir, tmp_path, uredis,
                                                                netns):
    """A /12 in the shared set is refused by default (wider than /16) and
    logged once; with `prefixfloor = 8 48` the same member is applied and
    an IPv6 /40 is refused instead."""
    expiry = time.time() + 600
    for member in ("10.16.0.0/12", "2001:db8::/40", "198.51.100.0/24"):
        ban_from_elsewhere(uredis, member, expiry)
    for floor, v4_in, v6_in in ((None, False, True), ("8 48", True, False)):
        default = {"port": "143"}
        if floor is not None:
            default["prefixfloor"] = floor
        t = TapDaemon(build_dir, tmp_path, uredis, banaction="nftables", default=default)
        open(t.logfile, "w").close()
        t.netns = netns
        try:
            start_in_ns(t)
            wait_for(lambda: "198.51.100.0 timeout" in nft_table(netns), 5, what="snapshot")
            text = nft_table(netns)
            assert ("10.16.0.0 timeout" in text) == v4_in, text
            assert ("2001:db8:: timeout" in text) == v6_in, text
            refused = "10.16.0.0/12" if not v4_in else "2001:db8::/40"
            t.wait_log("MG0649: refused from Redis: .*%s" % re.escape(refused), timeout=5)
            assert t.stop() == 0
        finally:
            t.kill()
        subprocess.run([IP, "netns", "exec", netns, NFT, "delete", "table", "inet",
                        "mailguard"], check=False)
