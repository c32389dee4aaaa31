#!/usr/bin/python3
"""dbmail_tap end to end: log lines in, failures and bans in Redis.

Measured in one run, against a real redis-server on 127.0.0.1 that this
script starts and stops:
  1. Ingest: a 1,000,000-line DBMail log (bench_tap_match's generator: 10%
     failed logins over 10,000 addresses, IPv4 and IPv6, every DBMail line
     shape) that `dbmail_tap run` must catch up on from offset 0 (its
     statefile says so), with the dbmail-imap and dbmail-pop3 jails on it
     (maxretry high, so every failure stays in its window and can be
     counted).  Timed from the daemon's start until sentinel failures
     after the last line, one per jail, are in Redis; then the windows are
     summed and must hold exactly the failures `dbmail_tap test FILE
     dbmail` finds.  CPU seconds of the daemon and of redis-server are
     printed too: on a loaded machine wall time includes waiting for a
     core.
     Target >= 1,000,000 lines/s.
  2. Latency: with maxretry = 1, a failure line appended -> the ban's
     "ban" message published by Redis (a subscriber sees it), median over
     100 trials.  Target <= 5 ms.
  3. Memory: VmRSS of `dbmail_tap run` following 3 files (after some
     lines in each), and again after the 1M-line ingest.  Target <= 8 MB.
  4. Fail2Ban 1.0 side by side (when installed): fail2ban-server with the
     same two jails (the seed's regexes, banaction none) fed the first
     BENCH_F2B_LINES lines of the same log; lines/s until its failure
     count stops moving, and the ratio to dbmail_tap's rate.
Timestamps: dbmail_tap stamps a failure with the time its line was read
(DBMail's own date has no year and no zone).
Environment: MG_BUILD, BENCH_LINES (1000000), BENCH_TRIALS (100),
BENCH_F2B=0 to skip Fail2Ban, BENCH_F2B_LINES (100000).
"""
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import random

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from support.redis import RedisServer  # noqa: E402
import bench_tap_match  # noqa: E402  (the shared log generator)

BUILD = os.environ.get("MG_BUILD", os.path.join(ROOT, "build"))
TAP = os.path.join(BUILD, "dbmail_tap")
NLINES = int(os.environ.get("BENCH_LINES", "1000000"))
TRIALS = int(os.environ.get("BENCH_TRIALS", "100"))
F2B_LINES = int(os.environ.get("BENCH_F2B_LINES", "100000"))
SENTINEL = ("Nov 30 23:59:59 mail dbmail-imapd[1]: [0x1] Notice:[imap] "
            "dbmail_imap_session_handle_auth(+1448): [0x2] login rejected: "
            "user [sentinel] from [{addr}:1]\n")
POP3_SENTINEL = ("Nov 30 23:59:59 mail dbmail-pop3d[1]: [0x1] Error:[pop3] pop3(+1): "
                 "user [sentinel] coming from [{addr}] tried to login with wrong password\n")

procs = []


def stop_all():
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def write_conf(path, redis, statefile, jails, maxretry):
    out = ["[DEFAULT]", "redis = %s" % redis.url, "ignoreip = 127.0.0.1/8 ::1",
           "maxretry = %d" % maxretry, "findtime = 1d", "bantime = 1h",
           "statefile = %s" % statefile, "banaction = none", ""]
    for name, (flt, logs) in jails.items():
        out += ["[%s]" % name, "enabled = true", "filter = %s" % flt,
                "logpath = %s" % "\n          ".join(logs), ""]
    with open(path, "w") as f:
        f.write("\n".join(out))


def start_tap(conf, errpath):
    err = open(errpath, "ab")
    p = subprocess.Popen([TAP, "run", "-c", conf] + os.environ.get("BENCH_TAP_ARGS", "").split(), stdout=subprocess.DEVNULL, stderr=err)
    procs.append(p)
    deadline = time.monotonic() + 5
    while "MG0600" not in open(errpath).read():
        if time.monotonic() > deadline or p.poll() is not None:
            raise SystemExit("dbmail_tap did not start: " + open(errpath).read()[-2000:])
        time.sleep(0.01)
    time.sleep(0.2)
    return p


def stop_tap(p):
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout=30)
    if rc != 0:
        raise SystemExit("dbmail_tap exited %d" % rc)


def cpu_s(pid):
    """User + system CPU seconds of a process so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_cpu(redis):
    info = redis.cmd("INFO", "cpu")
    vals = dict(l.split(":", 1) for l in info.splitlines() if ":" in l)
    return float(vals["used_cpu_user"]) + float(vals["used_cpu_sys"])


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# A window's encoding is the store's internal business: a sorted set, a
# string of fixed-width 15-digit times, or comma-separated times.
SUM_SCRIPT = ("local t, n = 0, 0 "
              "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
              "local ty = redis.call('TYPE', k)['ok'] "
              "if ty == 'zset' then t = t + redis.call('ZCARD', k) "
              "elseif ty == 'string' then local v = redis.call('GET', k) "
              "local _, c = string.gsub(v, ',', ',') "
              "if c > 0 then t = t + c + 1 else t = t + math.floor(#v / 15) end end "
              "n = n + 1 end "
              "return {t, n}")


def window_total(redis, pattern):
    """Failures held in every window matching pattern, and the number of
    windows: summed inside Redis, one round trip (a few ms)."""
    t, n = redis.cmd("EVAL", SUM_SCRIPT, 0, pattern)
    return t, n


def wait_key(redis, key, timeout):
    c = redis.client()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if c("EXISTS", key):
                return True
            time.sleep(0.001)
        return False
    finally:
        c.close()


def first_line_hash(path):
    """The statefile's file identity: FNV-1a 64 over the first line
    (newline included), or over the first 4096 bytes when it is longer."""
    with open(path, "rb") as f:
        head = f.read(4096)
    nl = head.find(b"\n")
    data = head[:nl + 1] if nl >= 0 else head
    h = 1469598103934665603
    for c in data:
        h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def bench_ingest(tmp, redis, log):
    """The log is in place before the daemon starts, and the statefile says
    it was left at offset 0 (a daemon catching up after downtime): what is
    timed is dbmail_tap's reading and storing, not a writer's speed."""
    tlog = os.path.join(tmp, "ingest.log")
    state = os.path.join(tmp, "ingest.state")
    conf = os.path.join(tmp, "ingest.conf")
    write_conf(conf, redis, state,
               {"dbmail-imap": ("dbmail-imap", [tlog]), "dbmail-pop3": ("dbmail-pop3", [tlog])},
               maxretry=100000)
    out = subprocess.run([TAP, "test", log, "dbmail"], capture_output=True, text=True).stdout
    expected = int(re.search(r"Lines:\s+\d+ read, (\d+) matched", out).group(1))
    # Sentinels after the last line, one per jail, at the highest address
    # there is: the store sorts a round by address and Redis runs its calls
    # in order, so once both are in Redis every failure before them is too.
    sentinel = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"
    skey = "ffff:ffff:ffff:ffff::/64"
    shutil.copyfile(log, tlog)
    with open(tlog, "ab") as dst:
        dst.write(SENTINEL.format(addr=sentinel).encode())
        dst.write(POP3_SENTINEL.format(addr=sentinel).encode())
    with open(state, "w") as f:
        f.write("v1 %d 0 %016x %s\n" % (os.stat(tlog).st_ino, first_line_hash(tlog), tlog))
    subprocess.run(["cat", tlog], stdout=subprocess.DEVNULL)   # page cache warm
    err = os.path.join(tmp, "ingest.err")
    rcpu0 = redis_cpu(redis)
    t0 = time.perf_counter()
    p = subprocess.Popen([TAP, "run", "-c", conf] + os.environ.get("BENCH_TAP_ARGS", "").split(),
                         stdout=subprocess.DEVNULL, stderr=open(err, "ab"))
    procs.append(p)
    for jail in ("dbmail-imap", "dbmail-pop3"):
        if not wait_key(redis, "mailguard:fail:%s:%s" % (jail, skey), 120):
            raise SystemExit("a sentinel never reached Redis:\n" + open(err).read()[-2000:])
    dt = time.perf_counter() - t0
    total, keys = window_total(redis, "mailguard:fail:*")
    if total - 2 < expected:
        # not all there yet (the sentinel order did not hold): time it the
        # slow way, polling until the count is complete
        deadline = time.monotonic() + 60
        while total - 2 < expected and time.monotonic() < deadline:
            time.sleep(0.05)
            total, keys = window_total(redis, "mailguard:fail:*")
        dt = time.perf_counter() - t0
    total -= 2
    keys -= 2
    rss_after = rss_kb(p.pid)
    tap_cpu, r_cpu = cpu_s(p.pid), redis_cpu(redis) - rcpu0
    stop_tap(p)
    return {"seconds": dt, "lines_per_s": NLINES / dt,
            "stored": total, "expected": expected, "keys": keys, "rss_after_kb": rss_after,
            "tap_cpu": tap_cpu, "redis_cpu": r_cpu}


def bench_latency(tmp, redis):
    tlog = os.path.join(tmp, "lat.log")
    open(tlog, "w").close()
    conf = os.path.join(tmp, "lat.conf")
    write_conf(conf, redis, os.path.join(tmp, "lat.state"),
               {"dbmail-imap": ("dbmail-imap", [tlog])}, maxretry=1)
    p = start_tap(conf, os.path.join(tmp, "lat.err"))
    sub = redis.client()
    sub("SUBSCRIBE", "mailguard:events")
    lat = []
    f = open(tlog, "a")
    try:
        for i in range(TRIALS):
            addr = "203.0.%d.%d" % (100 + i // 250, 1 + i % 250)
            line = SENTINEL.format(addr=addr)
            time.sleep(0.01)    # an idle daemon: the case the target is about
            t0 = time.perf_counter()
            f.write(line)
            f.flush()
            while True:
                msg = sub.read_reply()
                if msg[0] == "message" and msg[2].startswith("ban %s " % addr):
                    break
            lat.append((time.perf_counter() - t0) * 1000)
    finally:
        f.close()
        sub.close()
    stop_tap(p)
    return lat


def bench_rss(tmp, redis):
    logs = [os.path.join(tmp, "rss%d.log" % i) for i in range(3)]
    for lg in logs:
        open(lg, "w").close()
    conf = os.path.join(tmp, "rss.conf")
    write_conf(conf, redis, os.path.join(tmp, "rss.state"),
               {"dbmail-imap": ("dbmail-imap", logs), "dbmail-pop3": ("dbmail-pop3", logs)},
               maxretry=100000)
    p = start_tap(conf, os.path.join(tmp, "rss.err"))
    rng = random.Random(7)
    for _ in range(20):
        for lg in logs:
            with open(lg, "a") as f:
                for _ in range(500):
                    f.write(SENTINEL.format(addr="10.%d.%d.%d" % (rng.randrange(256),
                                                                 rng.randrange(256),
                                                                 rng.randrange(1, 255))))
        time.sleep(0.02)
    time.sleep(1.0)
    kb = rss_kb(p.pid)
    stop_tap(p)
    return kb


F2B_JAIL = """[DEFAULT]
backend = {backend}
banaction =
action =
ignoreip = 127.0.0.1/8 ::1
maxretry = 100000
# the generated lines are dated early in November: a window that reaches
# back that far, or Fail2Ban drops them as too old
findtime = 400d
bantime = 1h
dbfile = :memory:

[dbmail-imap]
enabled = true
logpath = {log}
filter =
failregex = login rejected: user \\[.*\\] from \\[<HOST>:\\d*\\]$
datepattern = ^%%b %%d %%H:%%M:%%S

[dbmail-pop3]
enabled = true
logpath = {log}
filter =
failregex = user \\[.*\\] coming from \\[<HOST>\\] tried to login with wrong password$
datepattern = ^%%b %%d %%H:%%M:%%S
"""


def bench_fail2ban(tmp, log):
    server = shutil.which("fail2ban-server")
    client = shutil.which("fail2ban-client")
    if not server or not client or os.environ.get("BENCH_F2B", "1") == "0":
        return None
    d = os.path.join(tmp, "f2b")
    os.makedirs(os.path.join(d, "jail.d"), exist_ok=True)
    os.makedirs(os.path.join(d, "filter.d"), exist_ok=True)
    os.makedirs(os.path.join(d, "action.d"), exist_ok=True)
    flog = os.path.join(d, "dbmail.log")
    open(flog, "w").close()
    try:
        import pyinotify  # noqa: F401
        backend = "pyinotify"
    except ImportError:
        backend = "polling"
    with open(os.path.join(d, "fail2ban.conf"), "w") as f:
        f.write("[Definition]\nloglevel = WARNING\nlogtarget = %s\n"
                "socket = %s\npidfile = %s\ndbfile = :memory:\n"
                % (os.path.join(d, "f2b.log"), os.path.join(d, "f2b.sock"),
                   os.path.join(d, "f2b.pid")))
    with open(os.path.join(d, "jail.conf"), "w") as f:
        f.write(F2B_JAIL.format(backend=backend, log=flog))
    sock = os.path.join(d, "f2b.sock")
    p = subprocess.Popen([server, "-f", "-x", "-c", d, "-s", sock, "-p",
                          os.path.join(d, "f2b.pid")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(p)

    def failed():
        tot = 0
        for jail in ("dbmail-imap", "dbmail-pop3"):
            r = subprocess.run([client, "-c", d, "-s", sock, "status", jail],
                               capture_output=True, text=True, timeout=30)
            m = re.search(r"Total failed:\s+(\d+)", r.stdout)
            if not m:
                return None
            tot += int(m.group(1))
        return tot

    try:
        deadline = time.monotonic() + 30
        while failed() is None:
            if time.monotonic() > deadline or p.poll() is not None:
                print("fail2ban-server did not start; skipped")
                return None
            time.sleep(0.2)
        # the first F2B_LINES lines of the same log
        with open(log, "rb") as src:
            head = b"".join(src.readline() for _ in range(F2B_LINES))
        expected = len(re.findall(rb"login rejected: user \[.*\] from \[[^\]]*:\d*\]\n|"
                                  rb"coming from \[[^\]]*\] tried to login with wrong password\n",
                                  head))
        t0 = time.perf_counter()
        with open(flog, "ab") as dst:
            dst.write(head)
        last, last_change = -1, time.perf_counter()
        limit = time.perf_counter() + 300
        while time.perf_counter() < limit:
            n = failed() or 0
            if n != last:
                last, last_change = n, time.perf_counter()
            if n >= expected or time.perf_counter() - last_change > 10:
                break
            time.sleep(0.1)
        dt = last_change - t0
        rss = rss_kb(p.pid)
        return {"lines": F2B_LINES, "seconds": dt, "lines_per_s": F2B_LINES / dt,
                "failed": last, "expected": expected, "backend": backend, "rss_kb": rss}
    finally:
        subprocess.run([client, "-c", d, "-s", sock, "stop"], capture_output=True, timeout=30)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def main():
    if not os.access(TAP, os.X_OK):
        raise SystemExit("%s not built" % TAP)
    tmp = tempfile.mkdtemp(prefix="bench_tap_ingest.")
    redis = RedisServer(tmp).start()
    ok = True

    def verdict(name, good, text):
        nonlocal ok
        ok = ok and good
        print("%-4s %s: %s" % ("PASS" if good else "FAIL", name, text))

    try:
        log = os.path.join(tmp, "generated.log")
        t0 = time.perf_counter()
        bench_tap_match.generate(log, NLINES, random.Random(20261126))
        print("generated %d lines (%.1f MB) in %.1f s" % (NLINES, os.path.getsize(log) / 1e6,
                                                          time.perf_counter() - t0))
        subprocess.run(["cat", log], stdout=subprocess.DEVNULL)

        load = os.getloadavg()[0]
        ing = bench_ingest(tmp, redis, log)
        redis.cmd("FLUSHALL")
        lat = bench_latency(tmp, redis)
        redis.cmd("FLUSHALL")
        rss = bench_rss(tmp, redis)
        f2b = bench_fail2ban(tmp, log)

        print()
        print("ingest: %d lines: every failure in Redis %.3f s after `dbmail_tap run` started"
              % (NLINES, ing["seconds"]))
        print("        %d failures stored in %d windows (dbmail_tap test finds %d)"
              % (ing["stored"], ing["keys"], ing["expected"]))
        print("        CPU: dbmail_tap %.2f s, redis-server %.2f s (the machine's load "
              "average was %.1f: wall time includes waiting for a core)"
              % (ing["tap_cpu"], ing["redis_cpu"], load))
        print("        the CPU-bound rate, NLINES / max(tap CPU, redis CPU): %.0f lines/s"
              % (NLINES / max(ing["tap_cpu"], ing["redis_cpu"], 1e-6)))
        print("latency (line appended -> ban published), ms: median %.3f, p90 %.3f, max %.3f"
              % (statistics.median(lat), sorted(lat)[int(len(lat) * 0.9) - 1], max(lat)))
        print("RSS following 3 files: %.1f MB; after the 1M-line ingest: %.1f MB"
              % (rss / 1024, ing["rss_after_kb"] / 1024))
        if f2b:
            print("fail2ban-server (%s): %d lines in %.1f s = %.0f lines/s, %d of %d failures, "
                  "RSS %.1f MB" % (f2b["backend"], f2b["lines"], f2b["seconds"],
                                   f2b["lines_per_s"], f2b["failed"], f2b["expected"],
                                   f2b["rss_kb"] / 1024))
        print()
        verdict("ingest completeness", ing["stored"] == ing["expected"],
                "%d stored, %d expected" % (ing["stored"], ing["expected"]))
        verdict("ingest rate", ing["lines_per_s"] >= 1e6,
                "%.0f lines/s (target >= 1,000,000)" % ing["lines_per_s"])
        verdict("latency", statistics.median(lat) <= 5.0,
                "median %.3f ms over %d trials (target <= 5 ms)"
                % (statistics.median(lat), len(lat)))
        verdict("memory", rss <= 8 * 1024, "%.1f MB following 3 files (target <= 8 MB)"
                % (rss / 1024))
        if f2b:
            print("INFO vs fail2ban-server: %.0fx its ingest rate (%.0f vs %.0f lines/s), "
                  "%.1fx less memory" % (ing["lines_per_s"] / f2b["lines_per_s"],
                                         ing["lines_per_s"], f2b["lines_per_s"],
                                         f2b["rss_kb"] / max(rss, 1)))
        else:
            print("SKIP vs fail2ban-server: not installed (or BENCH_F2B=0)")
        return 0 if ok else 1
    finally:
        stop_all()
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
