"""Drills for dbmail_tap: a steady stream of failed IMAP logins from many
addresses (198.51.100.0/24 and /64s of 2001:db8::/48), each address
failing a known number of times, 1 to maxretry, while the tap is killed,
Redis is paused, killed or full, and the log is rotated.  Every line must
be counted exactly once: an address below maxretry holds exactly its
failures in its window, one at maxretry is banned once (history 1), and
a line read again after a restart comes back from Redis as a duplicate.
Each Redis state change is one log line.
"""
import contextlib
import os
import re
import shutil
import signal
import threading
import time

import pytest

from conftest import scaled
from support.redis import RedisError
from support.tap import TapDaemon, wait_for

JAIL = "dbmail-imap"
MAXRETRY = 5
FAIL_KEY = "mailguard:fail:%s:" % JAIL
LINE = ("{ts} mail dbmail-imapd[1234]: [0x55d0c0ffee00] Notice:[imap] "
        "dbmail_imap_session_handle_auth(+1448): [0x55d0c0ffee10] login rejected: "
        "user [drill{seq}] from [{addr}:{port}]\n")

# Redis's view of every failure counted: the windows' entries, plus
# maxretry for each ban (a ban clears its window).  Read in one call, not
# one per address.
COUNTED = """
local n = 0
for _, k in ipairs(redis.call('KEYS', ARGV[1] .. '*')) do
    n = n + redis.call('ZCARD', k)
end
return {n, redis.call('ZCARD', ARGV[2])}
"""


def plan(n4, n6):
    """The order of the lines: every address fails 1 .. maxretry times in
    turn (a fifth of them are banned), and round r holds one line of every
    address failing more than r times, so each address's failures are
    spread over the whole stream."""
    v4 = ["198.51.100.%d" % (1 + i % 254) for i in range(n4)]
    v6 = ["2001:db8:0:%x::%x" % (i + 1, 7 + i % 100) for i in range(n6)]
    assert len(set(v4)) == n4
    addrs = [a for pair in zip(v4, v6) for a in pair] + v4[len(v6):] + v6[len(v4):]
    counts = {a: 1 + i % MAXRETRY for i, a in enumerate(addrs)}
    return [a for r in range(MAXRETRY) for a in addrs if counts[a] > r]


def key_of(addr):
    """The tap's ban key: the address, or an IPv6 address's /64."""
    if ":" in addr:
        return addr.split("::")[0] + "::/64"
    return addr


class Stream:
    """Writes the lines of a plan to a log file at a steady rate, from a
    thread, the way DBMail does: appending, each line whole.  A test holds
    `lock` to act between two lines; reopen() makes the writer open the
    path again at its next line (a logger told that its file was rotated).
    """

    def __init__(self, path, order, rate):
        self.path = path
        self.order = order
        self.rate = rate
        self.written = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self._reopen = False
        self.error = None
        self.th = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.t0 = time.monotonic()
        self.th.start()
        return self

    def reopen(self):
        with self.lock:
            self._reopen = True

    def _run(self):
        f = open(self.path, "a")
        try:
            # bounded: the plan's length at its rate, and a margin
            limit = self.t0 + len(self.order) / self.rate * 3 + 60
            i = 0
            while i < len(self.order) and not self.stop.is_set():
                now = time.monotonic()
                if now > limit:
                    raise RuntimeError("the stream fell behind its rate")
                due = min(len(self.order), int((now - self.t0) * self.rate) + 1)
                with self.lock:
                    if self._reopen:
                        f.close()
                        f = open(self.path, "a")
                        self._reopen = False
                    if due > i:
                        ts = time.strftime("%b %d %H:%M:%S")
                        f.write("".join(LINE.format(ts=ts, seq=s, addr=self.order[s],
                                                    port=1024 + s % 60000)
                                        for s in range(i, due)))
                        f.flush()
                        i = due
                        self.written = i
                time.sleep(0.005)
        except Exception as e:      # seen by join()
            self.error = e
        finally:
            f.close()

    def join(self, timeout=None):
        if timeout is None:
            timeout = len(self.order) / self.rate * 3 + 60
        self.th.join(timeout)
        assert not self.th.is_alive(), "the stream did not end"
        assert self.error is None, self.error
        assert self.written == len(self.order)

    def halt(self):
        self.stop.set()
        self.th.join(30)


class Drill:
    """One tap on one log file and the Redis it counts into, with the
    plan's exact expectations."""

    def __init__(self, build_dir, tmp_path, redis, n4, n6, rate, name):
        d = {"maxretry": str(MAXRETRY), "findtime": "10m", "bantime": "1h"}
        self.redis = redis
        self.tap = TapDaemon(build_dir, tmp_path, redis, default=d, name=name)
        open(self.tap.logfile, "w").close()
        self.order = plan(n4, n6)
        self.stream = Stream(self.tap.logfile, self.order, rate)

    # ---- Redis ----
    def counted(self):
        """Failures Redis counted (windows + maxretry per ban)."""
        c = self.redis.client()
        try:
            n, bans = c("EVAL", COUNTED, 0, FAIL_KEY, "mailguard:bans")
        finally:
            c.close()
        return n + MAXRETRY * bans

    def wait_counted(self, n, within):
        return wait_for(lambda: self.counted() == n, within, 0.05,
                        "%d failures counted" % n)

    @contextlib.contextmanager
    def held(self, drained=False):
        """The stream stopped between two lines; drained: and every line
        written so far counted.  Yields the number written."""
        with self.stream.lock:
            if drained:
                self.wait_counted(self.stream.written, within=15)
            yield self.stream.written

    def state_lines(self):
        """The Redis state lines (MG0620 lost, MG0622 back) of every run."""
        return re.findall(r".*MG062[02]: .*", self.log())

    def expected(self, first=0):
        """Per ban key, the indices of its lines from line `first` on
        (the ones before it went with a Redis that lost its data)."""
        keys = {}
        for i in range(first, len(self.order)):
            keys.setdefault(key_of(self.order[i]), []).append(i)
        return keys

    def check_exact(self, first=0):
        """Every address holds exactly its failures; those at maxretry are
        banned, once (history 1).  Returns the banned keys."""
        keys = self.expected(first)
        c = self.redis.client()
        try:
            order = sorted(keys)
            for k in order:
                c.send("ZCARD", FAIL_KEY + k)
                c.send("ZSCORE", "mailguard:bans", k)
                c.send("HGET", "mailguard:history:%s" % k, "count")
            got = {k: (c.read_reply(), c.read_reply(), c.read_reply()) for k in order}
            nbans = c("ZCARD", "mailguard:bans")
        finally:
            c.close()
        wrong = []
        for k, idx in keys.items():
            window, ban, hist = got[k]
            want = (0, True, "1") if len(idx) == MAXRETRY else (len(idx), False, None)
            if (window, ban is not None, hist) != want:
                wrong.append((k, len(idx), got[k]))
        assert not wrong, "%d addresses off, e.g. %s" % (len(wrong), wrong[:5])
        banned = [k for k, idx in keys.items() if len(idx) == MAXRETRY]
        assert nbans == len(banned)
        return banned

    def check_times(self, first, split, t_split):
        """The lines [first, split) were read before t_split and the later
        ones after it: each window holds exactly as many entries older
        than t_split as it has lines in [first, split).  So failures that
        waited out an outage kept the time their line was read."""
        keys = {k: idx for k, idx in self.expected(first).items() if len(idx) < MAXRETRY}
        cut = t_split * 1000
        c = self.redis.client()
        try:
            order = sorted(keys)
            for k in order:
                c.send("ZCOUNT", FAIL_KEY + k, "-inf", "(%d" % cut)
            got = {k: c.read_reply() for k in order}
        finally:
            c.close()
        wrong = [(k, got[k], len([i for i in idx if i < split])) for k, idx in keys.items()
                 if got[k] != len([i for i in idx if i < split])]
        assert not wrong, "%d windows with other times, e.g. %s" % (len(wrong), wrong[:5])

    # ---- the tap's log, across every run ----
    def log(self):
        with open(self.tap.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def duplicates(self):
        return sum(int(n) for n in re.findall(r"MG0626: (\d+) failures", self.log()))

    def ban_lines(self):
        """MG0621 lines per ban key, across every run."""
        out = {}
        for k, n in re.findall(r"MG0621: Ban (\S+) \[%s\] after (\d+) failures" % JAIL,
                               self.log()):
            out.setdefault(k, []).append(int(n))
        return out

    def state_offset(self):
        """The offset the statefile holds for the log file."""
        with open(self.tap.statefile) as f:
            for line in f:
                parts = line.split(" ", 4)
                if parts[0] == "v1" and parts[4].rstrip("\n") == self.tap.logfile:
                    return int(parts[2])
        raise AssertionError("the statefile names no position for the log")

    def lines_before(self, off):
        with open(self.tap.logfile, "rb") as f:
            return f.read(off).count(b"\n")

    def close(self):
        self.stream.halt()
        self.tap.kill()


def report(name, **figures):
    print("\n%s: %s" % (name, ", ".join("%s %s" % kv for kv in figures.items())))


@pytest.fixture
def drill_factory(build_dir, tmp_path):
    made = []

    def make(redis, **kw):
        d = Drill(build_dir, tmp_path, redis, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def test_kill_9_mid_stream_counts_every_line_once_and_the_reread_ones_come_back_duplicate(
        redis_server, drill_factory):
    restarts = scaled(6, 2)
    d = drill_factory(redis_server, n4=scaled(254, 100), n6=scaled(1746, 100),
                      rate=scaled(400, 200), name="kill9")
    d.tap.start()
    t0 = time.monotonic()
    d.stream.start()
    total = len(d.order)
    interval = total / d.stream.rate / (restarts + 1)
    expect_dups, before = 0, 0
    reread = []
    for _ in range(restarts):
        time.sleep(interval)
        # past the lines it read again at its start, and some more: the
        # duplicates it met are logged by then
        wait_for(lambda: d.counted() >= min(before + 20, total), 30, 0.05,
                 "the restarted tap past its start")
        d.tap.kill()
        time.sleep(0.1)             # Redis runs what was already sent
        before = d.counted()
        again = d.lines_before(d.state_offset())
        # the statefile never points past a line Redis has not counted
        assert again <= before, (again, before)
        reread.append(before - again)
        expect_dups += before - again
        d.tap.start()
    d.stream.join()
    d.wait_counted(total, within=30)
    assert d.tap.stop() == 0
    banned = d.check_exact()
    assert d.duplicates() == expect_dups, (d.duplicates(), reread)
    # One ban line per ban, saying maxretry; none when the run that made
    # the ban was killed between Redis's answer and the line (the ban and
    # its history, checked above, are what counts).
    lines = d.ban_lines()
    assert all(n == [MAXRETRY] for n in lines.values()), \
        {k: n for k, n in lines.items() if n != [MAXRETRY]}
    assert set(lines) <= set(banned)
    report("kill -9", lines=total, restarts=restarts, counted=d.counted(),
           bans=len(banned), ban_lines=len(lines), duplicates=d.duplicates(),
           reread_per_restart=reread, seconds="%.1f" % (time.monotonic() - t0))


def test_a_redis_pause_longer_than_the_command_timeout_loses_and_doubles_nothing(
        redis_server, drill_factory):
    pause = scaled(6, 3)
    d = drill_factory(redis_server, n4=scaled(254, 100), n6=scaled(746, 100),
                      rate=scaled(400, 200), name="pause")
    d.tap.start()
    t0 = time.monotonic()
    d.stream.start()
    total = len(d.order)
    time.sleep(total / d.stream.rate / 3)
    at_pause = d.stream.written
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(pause)
        during = d.stream.written - at_pause
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    d.stream.join()
    d.wait_counted(total, within=30)
    assert d.tap.stop() == 0
    banned = d.check_exact()
    lines = d.state_lines()
    assert [re.search(r"MG06\d\d", l).group(0) for l in lines] == ["MG0620", "MG0622"], lines
    # what Redis ran of the calls that timed out came back as duplicates
    assert 0 <= d.duplicates() <= during
    # and a ban one of them made is logged from its duplicate: one line
    # per ban, saying maxretry
    ban_lines = d.ban_lines()
    assert set(ban_lines) == set(banned), sorted(set(banned) ^ set(ban_lines))[:10]
    assert all(n == [MAXRETRY] for n in ban_lines.values()), \
        {k: n for k, n in ban_lines.items() if n != [MAXRETRY]}
    report("Redis paused %ds" % pause, lines=total, during_pause=during,
           counted=d.counted(), bans=len(banned), duplicates=d.duplicates(),
           outage_line=lines[0].split("MG0620: ")[1],
           seconds="%.1f" % (time.monotonic() - t0))


def used_memory(redis):
    return int(re.search(r"used_memory:(\d+)", redis.cmd("INFO", "memory")).group(1))


def test_redis_killed_and_restarted_empty_gets_every_line_of_the_outage_with_its_time(
        redis_server, drill_factory):
    outage = scaled(6, 3)
    d = drill_factory(redis_server, n4=scaled(254, 100), n6=scaled(746, 100),
                      rate=scaled(400, 200), name="empty")
    d.tap.start()
    t0 = time.monotonic()
    d.stream.start()
    total = len(d.order)
    time.sleep(total / d.stream.rate / 4)
    # What Redis held goes with it; nothing may be in flight at the kill
    # for the counts to be exact, so the stream waits for it.
    with d.held(drained=True) as first:
        redis_server.stop()
    time.sleep(outage)
    with d.held() as split:
        time.sleep(0.2)             # every line written is read by now
        t_back = time.time()
        redis_server.start()        # same port, empty
    d.stream.join()
    d.wait_counted(total - first, within=30)
    assert d.tap.stop() == 0
    banned = d.check_exact(first)
    d.check_times(first, split, t_back)
    lines = d.state_lines()
    assert [re.search(r"MG06\d\d", l).group(0) for l in lines] == ["MG0620", "MG0622"], lines
    assert d.duplicates() == 0
    report("Redis killed %ds, restarted empty" % outage, lines=total, before=first,
           during_outage=split - first, counted=d.counted(), bans=len(banned),
           duplicates=d.duplicates(), outage_line=lines[0].split("MG0620: ")[1],
           seconds="%.1f" % (time.monotonic() - t0))


def test_a_full_redis_refuses_every_failure_whole_and_takes_them_all_when_memory_frees(
        redis_server, drill_factory):
    outage = scaled(6, 3)
    d = drill_factory(redis_server, n4=scaled(254, 100), n6=scaled(746, 100),
                      rate=scaled(400, 200), name="oom")
    d.tap.start()
    t0 = time.monotonic()
    d.stream.start()
    total = len(d.order)
    time.sleep(total / d.stream.rate / 4)
    # Full at once: a limit below what Redis holds (filling it up to the
    # limit instead leaves it at the edge, where a small call still fits
    # and a large one does not, which is Redis's business, not the tap's).
    cap = used_memory(redis_server) - 262144
    redis_server.cmd("CONFIG", "SET", "maxmemory-policy", "noeviction")
    redis_server.cmd("CONFIG", "SET", "maxmemory", str(cap))
    with pytest.raises(RedisError, match="^OOM"):
        redis_server.cmd("SET", "drill:probe", "x")
    at_full = d.counted()
    keys_at_full = redis_server.cmd("DBSIZE")
    mem_at_full = used_memory(redis_server)
    d.tap.wait_log("MG0620: ", timeout=10)
    time.sleep(outage)
    # nothing was written meanwhile: a refused call wrote nothing either,
    # and memory stayed where it was (give or take a client's buffers)
    assert d.counted() == at_full
    assert redis_server.cmd("DBSIZE") == keys_at_full
    mem_after = used_memory(redis_server)
    assert mem_after <= mem_at_full + 65536, (cap, mem_at_full, mem_after)
    with d.held() as split:
        time.sleep(0.2)
        t_back = time.time()
        redis_server.cmd("CONFIG", "SET", "maxmemory", "0")
    d.stream.join()
    d.wait_counted(total, within=30)
    assert d.tap.stop() == 0
    banned = d.check_exact()
    d.check_times(0, split, t_back)
    lines = d.state_lines()
    assert [re.search(r"MG06\d\d", l).group(0) for l in lines] == ["MG0620", "MG0622"], lines
    assert "OOM" in lines[0]
    assert d.duplicates() == 0
    report("Redis out of memory %ds" % outage, lines=total, counted_at_full=at_full,
           maxmemory=cap, used_at_full=mem_at_full, used_after=mem_after,
           counted=d.counted(), bans=len(banned), duplicates=d.duplicates(),
           outage_line=lines[0].split("MG0620: ")[1],
           seconds="%.1f" % (time.monotonic() - t0))


@pytest.mark.parametrize("how", ["rename", "copytruncate"])
def test_rotation_mid_stream_counts_every_line_once(how, redis_server, drill_factory):
    rotations = scaled(4, 2)
    d = drill_factory(redis_server, n4=scaled(254, 100), n6=scaled(746, 100),
                      rate=scaled(400, 200), name="rotate-" + how)
    d.tap.start()
    t0 = time.monotonic()
    d.stream.start()
    total = len(d.order)
    interval = total / d.stream.rate / (rotations + 1)
    for n in range(1, rotations + 1):
        time.sleep(interval)
        old = "%s.%d" % (d.tap.logfile, n)
        if how == "rename":
            with d.held():
                os.rename(d.tap.logfile, old)
            # the logger goes on in the old file for a moment, then
            # reopens its path (a new file)
            time.sleep(0.3)
            d.stream.reopen()
        else:
            # logrotate's copytruncate: a line written between the copy
            # and the truncation is lost to every reader, and so is one
            # the tap has not read by then: the stream waits for both
            with d.held(drained=True):
                shutil.copyfile(d.tap.logfile, old)
                with open(d.tap.logfile, "r+") as f:
                    f.truncate(0)
    d.stream.join()
    d.wait_counted(total, within=30)
    assert d.tap.stop() == 0
    banned = d.check_exact()
    log = d.log()
    tag = "MG0612" if how == "rename" else "MG0613"
    assert log.count(tag) == rotations, re.findall(r".*MG061[23].*", log)
    assert d.duplicates() == 0
    report("rotation by %s" % how, lines=total, rotations=rotations, counted=d.counted(),
           bans=len(banned), duplicates=d.duplicates(),
           seconds="%.1f" % (time.monotonic() - t0))


def test_kill_9_during_a_redis_pause_across_a_rotation_counts_every_line_once(
        redis_server, drill_factory):
    """The three at once: Redis paused, the log rotated meanwhile, the tap
    killed before Redis returns and started again.  The failures of the
    rotated file wait in the queue when the tap dies; the statefile names
    that file by its inode, and the new run reads it again."""
    d = drill_factory(redis_server, n4=scaled(254, 100), n6=scaled(746, 100),
                      rate=scaled(400, 200), name="pause-rotate-kill")
    d.tap.start()
    t0 = time.monotonic()
    d.stream.start()
    total = len(d.order)
    third = total / d.stream.rate / 3
    time.sleep(third)
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(third / 3)
        with d.held():
            os.rename(d.tap.logfile, d.tap.logfile + ".1")
        time.sleep(0.3)
        d.stream.reopen()
        time.sleep(max(1.5, third / 3))     # a statefile written since
        d.tap.kill()
        d.tap.start()
        time.sleep(1)
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    d.stream.join()
    d.wait_counted(total, within=30)
    assert d.tap.stop() == 0
    banned = d.check_exact()
    log = d.log()
    assert re.search(r"MG0610: following .*imap\.log\.1 \(rotated away from ", log), log
    assert "MG0618" not in log
    report("kill -9 during a Redis pause across a rotation", lines=total,
           counted=d.counted(), bans=len(banned), duplicates=d.duplicates(),
           seconds="%.1f" % (time.monotonic() - t0))
