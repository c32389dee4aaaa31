"""Shared parts of the mod_mailguard benchmarks.

Everything runs on 127.0.0.1 only: httpd and redis-server processes this
file starts from generated configs in a private temporary directory, and
stops by PID.  Every load loop is bounded in count and in time.

The machine is shared and noisy, so figures are always ratios of runs made
side by side in one process (interleaved A B A B ...), printed with the
raw numbers they come from.  Instruction counts (callgrind) back up the
throughput figures where a few percent matter.
"""
import atexit
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("MG_BUILD", os.path.join(ROOT, "build"))
MODULE = os.path.join(BUILD, "mod_mailguard.so")
APACHE = shutil.which("apache2") or "/usr/sbin/apache2"
MODDIR = "/usr/lib/apache2/modules"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
WRK_LUA = os.path.join(HERE, "wrk_report.lua")
PHP_PAGE = os.path.join(HERE, "data", "login.php")

# The redis-server starter and RESP client of the integration tests.
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
# RespClient and RedisError are re-exported for the benchmark scripts.
from support.redis import RedisServer, RespClient, RedisError  # noqa: E402,F401
from support.ports import free_port  # noqa: E402
from support.http import HttpConn  # noqa: E402,F401  (re-exported)

# Tunables (environment), defaults chosen so `make bench` stays < 10 min.
# Many short runs rather than a few long ones: on a shared machine the load
# changes from second to second, and a ratio between two runs only means
# something when both saw the same load.
DURATION = int(os.environ.get("MG_BENCH_DURATION", "2"))     # s per wrk run
ROUNDS = int(os.environ.get("MG_BENCH_ROUNDS", "8"))         # interleaved rounds
THREADS = int(os.environ.get("MG_BENCH_THREADS", "2"))       # wrk -t
CONNS = int(os.environ.get("MG_BENCH_CONNS", "32"))          # wrk -c
NBANS = int(os.environ.get("MG_BENCH_BANS", "50000"))        # live bans in Redis

# The stand-in "client" addresses a trusted loopback proxy names in
# X-Forwarded-For come from documentation/benchmark ranges, so nothing
# here could ever be mistaken for a real host (and no packet leaves lo).
BANNED_ADDR = "203.0.113.7"


def module_available():
    return os.path.exists(MODULE)


# ---------------------------------------------------------------- workdir

_workdir = None



def begin(name):
    """(harness, report, runnable) for a module benchmark: not runnable,
    with the reason recorded, when the module is not built and the run is
    not --harness-only."""
    harness = harness_only()
    rep = Report(name, harness)
    if not harness and not module_available():
        rep.skip("all targets", "%s is not built (run `make` first); "
                 "use --harness-only to validate the harness" % MODULE)
        return harness, rep, False
    return harness, rep, True

def workdir():
    """One private temporary directory per benchmark process (readable by
    the httpd children, which run as www-data)."""
    global _workdir
    if _workdir is None:
        _workdir = tempfile.mkdtemp(prefix="modbench-", dir=os.environ.get("MG_BENCH_TMP"))
        os.chmod(_workdir, 0o755)
        if not os.environ.get("MG_BENCH_KEEP"):
            atexit.register(shutil.rmtree, _workdir, True)
    return _workdir


_running = []


def _stop_all():
    for srv in list(_running):
        try:
            srv.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(_stop_all)


def _sig_exit(signum, _frame):
    _stop_all()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _sig_exit)


def start_redis(name="redis"):
    d = os.path.join(workdir(), name)
    os.makedirs(d, exist_ok=True)
    srv = RedisServer(d).start()
    _running.append(srv)
    return srv


# ---------------------------------------------------------------- httpd

DOCROOT_FILES = {
    # A small static file: the page wrk asks for.
    "static.html": "<!doctype html><title>ok</title><p>static benchmark page</p>\n",
}


class Httpd:
    """One apache2 started from a generated config.

    mpm: "event" or "prefork".  mailguard: None (module not loaded) or a
    list of server-level MailGuard* lines (the module is then loaded).
    probe: add a second vhost on its own port that trusts X-Forwarded-For
    from 127.0.0.1 (mod_remoteip), so the harness can ask "is address X
    denied?" without changing the main vhost the benchmark measures.
    main_extra / probe_extra: config lines inside each vhost.
    """

    def __init__(self, name, mpm="event", mailguard=None, php=False,
                 probe=True, remoteip_main=False, main_extra=(),
                 probe_extra=(), global_extra=(), loglevel="warn", modules=()):
        self.name = name
        self.mpm = mpm
        self.mailguard = mailguard
        self.php = php
        self.dir = os.path.join(workdir(), name)
        self.docroot = os.path.join(self.dir, "htdocs")
        os.makedirs(self.docroot, exist_ok=True)
        for fname, text in DOCROOT_FILES.items():
            with open(os.path.join(self.docroot, fname), "w") as f:
                f.write(text)
        if php:
            shutil.copy(PHP_PAGE, os.path.join(self.docroot, "login.php"))
        self.port = free_port()
        self.probe_port = free_port() if probe else None
        self.remoteip_main = remoteip_main
        self.main_extra = list(main_extra)
        self.probe_extra = list(probe_extra)
        self.global_extra = list(global_extra)
        self.loglevel = loglevel
        self.modules = list(modules)
        self.conf = os.path.join(self.dir, "httpd.conf")
        self.errlog = os.path.join(self.dir, "error.log")
        self.proc = None
        self.valgrind_out = None
        self._write_conf()

    # The config differs between servers only in the lines asked for, so
    # side-by-side ratios compare the module and nothing else.
    def _write_conf(self):
        L = []
        L.append('ServerRoot "%s"' % self.dir)
        L.append('ServerName bench.invalid')
        L.append('PidFile "%s/httpd.pid"' % self.dir)
        L.append('DefaultRuntimeDir "%s"' % self.dir)
        L.append('ErrorLog "%s"' % self.errlog)
        L.append('LogLevel %s' % self.loglevel)
        L.append('User www-data')
        L.append('Group www-data')
        mods = ["mpm_%s" % self.mpm, "authz_core", "mime", "remoteip"] + self.modules
        for m in mods:
            L.append('LoadModule %s_module %s/mod_%s.so' % (m, MODDIR, m))
        if self.php:
            L.append('LoadModule php_module %s/libphp8.2.so' % MODDIR)
            L.append('<FilesMatch "\\.php$">\n    SetHandler application/x-httpd-php\n</FilesMatch>')
        if self.mailguard is not None:
            L.append('LoadModule mailguard_module "%s"' % MODULE)
            L.extend(self.mailguard)
        L.append('TypesConfig /etc/mime.types')
        if self.mpm == "event":
            # Fixed process/thread counts: no scaling during a run.
            L.append('StartServers 2\nServerLimit 2\nThreadsPerChild 32\n'
                     'ThreadLimit 32\nMaxRequestWorkers 64\n'
                     'MinSpareThreads 1\nMaxSpareThreads 64\n'
                     'MaxConnectionsPerChild 0')
        else:
            L.append('StartServers 40\nServerLimit 40\nMaxRequestWorkers 40\n'
                     'MinSpareServers 1\nMaxSpareServers 40\n'
                     'MaxConnectionsPerChild 0')
        L.append('KeepAlive On\nMaxKeepAliveRequests 100\nKeepAliveTimeout 5')
        L.append('DocumentRoot "%s"' % self.docroot)
        L.append('<Directory />\n    AllowOverride None\n    Require all granted\n</Directory>')
        L.extend(self.global_extra)
        L.append('Listen 127.0.0.1:%d' % self.port)
        L.append('<VirtualHost 127.0.0.1:%d>' % self.port)
        if self.remoteip_main:
            L.append('    RemoteIPHeader X-Forwarded-For\n    RemoteIPInternalProxy 127.0.0.1')
        L.extend("    " + x for x in self.main_extra)
        L.append('</VirtualHost>')
        if self.probe_port:
            L.append('Listen 127.0.0.1:%d' % self.probe_port)
            L.append('<VirtualHost 127.0.0.1:%d>' % self.probe_port)
            L.append('    RemoteIPHeader X-Forwarded-For\n    RemoteIPInternalProxy 127.0.0.1')
            L.extend("    " + x for x in self.probe_extra)
            L.append('</VirtualHost>')
        with open(self.conf, "w") as f:
            f.write("\n".join(L) + "\n")

    def configtest(self):
        p = subprocess.run([APACHE, "-t", "-f", self.conf], capture_output=True,
                           text=True, timeout=30)
        return p.returncode, (p.stdout + p.stderr).strip()

    def start(self, valgrind=False, timeout=20.0):
        """Start in the foreground (we own the process).  valgrind=True runs
        a single process (-X, prefork) under callgrind, with counting
        controlled by dumps (see Callgrind)."""
        rc, out = self.configtest()
        if rc != 0:
            raise RuntimeError("%s: apache2 -t failed: %s" % (self.name, out))
        if valgrind:
            self.valgrind_out = os.path.join(self.dir, "callgrind.out")
            # Dumps are written after the process has become www-data.
            os.chmod(self.dir, 0o1777)
            args = (["valgrind", "--tool=callgrind", "--vgdb=no",
                     "--callgrind-out-file=%s.%%p" % self.valgrind_out]
                    + Callgrind.OPTS + [APACHE, "-X", "-f", self.conf])
            timeout = max(timeout, 120.0)
        else:
            args = [APACHE, "-f", self.conf, "-DFOREGROUND"]
        log = open(os.path.join(self.dir, "stdout.log"), "w")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        _running.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited at start (%s): %s%s"
                                   % (self.name, self.proc.returncode, self.tail(),
                                      self.tail(path=os.path.join(self.dir, "stdout.log"))))
            try:
                st, _, _ = http_request(self.port, "/static.html", timeout=2.0)
                if st == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("%s did not answer on port %d" % (self.name, self.port))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None
        if self in _running:
            _running.remove(self)

    def pids(self):
        """The parent and its children (from /proc), for CPU accounting."""
        if not self.proc:
            return []
        out = [self.proc.pid]
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.proc.pid:
                    out.append(int(d))
            except (OSError, IndexError, ValueError):
                continue
        return out

    def cpu_seconds(self):
        """utime+stime of every live process of this server, plus what its
        reaped children used (the parent's cutime/cstime)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for i, pid in enumerate(self.pids()):
            try:
                with open("/proc/%d/stat" % pid) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
            if i == 0:
                total += int(fields[13]) + int(fields[14])
        return total / tick

    def tail(self, n=20, path=None):
        try:
            with open(path or self.errlog) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def log_lines(self, pattern):
        try:
            with open(self.errlog) as f:
                return [x for x in f if re.search(pattern, x)]
        except OSError:
            return []

    def log_size(self):
        try:
            return os.path.getsize(self.errlog)
        except OSError:
            return 0

    def url(self, path="/static.html"):
        return "http://127.0.0.1:%d%s" % (self.port, path)


# ---------------------------------------------------------------- HTTP

def http_request(port, path, method="GET", headers=(), body=b"", timeout=5.0):
    c = HttpConn(port, timeout)
    try:
        return c.request(path, method, headers, body, close=True)
    finally:
        c.close()


def xff(addr):
    return "X-Forwarded-For: %s" % addr


# ---------------------------------------------------------------- Redis

def ban_addresses(n, seed=1):
    """n distinct live-ban members in canonical text: four in five IPv4
    hosts in 10.0.0.0/8, one in five IPv6 /64 prefixes in 2001:db8::/32
    (the shapes the module writes), never 127.0.0.0/8."""
    rnd = random.Random(seed)
    out = set()
    while len(out) < n:
        if rnd.random() < 0.8:
            v = rnd.randrange(1, 1 << 24)
            out.add("10.%d.%d.%d" % (v >> 16, (v >> 8) & 255, v & 255))
        else:
            out.add("2001:db8:%x:%x::/64" % (rnd.randrange(1, 65536),
                                            rnd.randrange(1, 65536)))
    return sorted(out)


def load_bans(redis, members, expiry, prefix="mailguard:", batch=1000):
    """ZADD every member with score expiry, pipelined on one raw socket:
    all commands are written first, then all replies read."""
    c = redis.client()
    try:
        key = prefix + "bans"
        nbatches = 0
        for i in range(0, len(members), batch):
            args = ["ZADD", key]
            for m in members[i:i + batch]:
                args += [str(expiry), m]
            c.send(*args)
            nbatches += 1
        added = 0
        for _ in range(nbatches):
            added += c.read_reply()
        return added
    finally:
        c.close()


def probe_addr(member):
    """A host address a request can come from that falls under a member."""
    if member.endswith("/64"):
        return member[:-len("::/64")] + "::5"
    return member


def denied(server, addr, path="/static.html"):
    """Status the probe vhost gives a request from addr (via XFF)."""
    st, _, _ = http_request(server.probe_port, path, headers=[xff(addr)])
    return st


def wait_mirror(server, members, timeout, deny_status=403, sample=40):
    """Wait until the module's mirror holds the ban set: the status page
    (when the probe vhost has one) reports at least len(members) entries,
    and a sample of members (plus the first and last) is denied through
    the probe vhost.  Returns seconds waited."""
    rnd = random.Random(7)
    pick = [members[0], members[-1]] + rnd.sample(members, min(sample, len(members)))
    t0 = time.monotonic()
    deadline = t0 + timeout
    pending = list(pick)
    while time.monotonic() < deadline:
        st = status_fields(server)
        if st is None or int(st.get("BansMirrored", "0")) >= len(members):
            pending = [m for m in pending if denied(server, probe_addr(m)) != deny_status]
            if not pending:
                return time.monotonic() - t0
        time.sleep(0.1)
    raise RuntimeError("%s: mirror not loaded after %.0fs: status %s, %d/%d sampled bans "
                       "not enforced (e.g. %s)" % (server.name, timeout, status_fields(server),
                                                   len(pending), len(pick), pending[0]))


def status_fields(server):
    """The status page as a dict, or None when there is none."""
    text = status_page(server)
    if text is None:
        return None
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


def status_page(server, path="/mailguard-status"):
    """The module's status handler output through the probe vhost, or None
    when it is not configured/available."""
    try:
        st, _, body = http_request(server.probe_port, path + "?auto")
    except OSError:
        return None
    return body.decode("latin-1") if st == 200 else None


# ---------------------------------------------------------------- wrk

_WRK_RE = re.compile(r"MGWRK (.*)")


def wrk(url, duration=None, headers=(), threads=None, conns=None):
    """One bounded wrk run against a loopback URL; returns a dict with
    rps, requests, status_errors (non-2xx/3xx), socket errors, and
    latency percentiles in milliseconds."""
    assert url.startswith("http://127.0.0.1:"), url
    duration = duration or DURATION
    args = [WRK, "-t%d" % (threads or THREADS), "-c%d" % (conns or CONNS),
            "-d%ds" % duration, "--timeout", "2s", "-s", WRK_LUA]
    for h in headers:
        args += ["-H", h]
    args.append(url)
    p = subprocess.run(args, capture_output=True, text=True, timeout=duration + 30)
    m = _WRK_RE.search(p.stdout)
    if p.returncode != 0 or not m:
        raise RuntimeError("wrk failed (%d): %s %s" % (p.returncode, p.stdout, p.stderr))
    d = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    res = {
        "requests": int(d["requests"]),
        "rps": d["requests"] / (d["duration_us"] / 1e6),
        "status_errors": int(d["status_errors"]),
        "sock_errors": int(d["connect"] + d["read"] + d["write"] + d["timeout"]),
        "timeouts": int(d["timeout"]),
        "p50": d["p50_us"] / 1000.0,
        "p90": d["p90_us"] / 1000.0,
        "p99": d["p99_us"] / 1000.0,
        "max": d["max_us"] / 1000.0,
    }
    return res


def bracketed(base, others, rounds=None, before=None, after=None, warmup=1):
    """Interleaved runs, every other one the baseline:
        base X1 base X2 base X3 base | X2 base X3 base X1 base | ...
    (the order of the others rotates each round).  Each run of X is judged
    against the mean of the two baseline runs around it, so a load change
    on the machine between runs cancels to first order.

    base, others: (label, url, headers) tuples.  before/after(label):
    optional callbacks around each run.  Returns (results, rel, p99d):
    results {label: [wrk result per run]}, rel {label: [rps / bracketing
    base rps]}, p99d {label: [p99 - bracketing base p99, ms]}.
    """
    rounds = rounds or ROUNDS
    allcases = [base] + list(others)
    for label, url, headers in allcases:
        if warmup:
            wrk(url, duration=warmup, headers=headers)
    results = {c[0]: [] for c in allcases}
    rel = {c[0]: [] for c in others}
    p99d = {c[0]: [] for c in others}
    n = len(others)

    def run(case):
        label, url, headers = case
        if before:
            before(label)
        try:
            res = wrk(url, headers=headers)
        finally:
            if after:
                after(label)
        results[label].append(res)
        print("  %-18s %9.0f req/s  p50 %7.3f  p99 %7.3f  max %7.1f ms  non-2xx %d  sockerr %d"
              % (label, res["rps"], res["p50"], res["p99"], res["max"],
                 res["status_errors"], res["sock_errors"]), flush=True)
        return res

    prev = run(base)
    for r in range(rounds):
        for i in range(n):
            case = others[(r + i) % n]
            x = run(case)
            nxt = run(base)
            ref_rps = (prev["rps"] + nxt["rps"]) / 2
            ref_p99 = (prev["p99"] + nxt["p99"]) / 2
            rel[case[0]].append(x["rps"] / ref_rps)
            p99d[case[0]].append(x["p99"] - ref_p99)
            prev = nxt
    return results, rel, p99d


def median(xs):
    return statistics.median(xs)


def pct(xs, q):
    """Nearest-rank percentile q (0..100) of xs."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def fmt_list(xs, f="%.3f"):
    return "[" + ", ".join(f % x for x in xs) + "]"


# ---------------------------------------------------------------- callgrind

class Callgrind:
    """Instructions per request of a single-process httpd (prefork -X)
    under callgrind, made deterministic without any timing: counting is on
    only inside ap_process_connection (--toggle-collect) and a profile is
    dumped each time it returns (--dump-after), so every client connection
    gets its own exact count and idle loops or background threads count
    nothing.  One connection carries N identical requests, the next 2N;
    per request = (I(2N) - I(N)) / N, which cancels the connection's own
    fixed cost (accept hooks, lingering close).
    """

    OPTS = ["--collect-atstart=no", "--toggle-collect=ap_process_connection",
            "--dump-after=ap_process_connection", "--separate-threads=yes"]

    def __init__(self, server):
        self.server = server
        self.pid = server.proc.pid
        self.seen = set()
        # The start-up probe's connection dumps too: wait for it.
        deadline = time.monotonic() + 60
        while not self._files() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _files(self):
        d = os.path.dirname(self.server.valgrind_out)
        base = os.path.basename(self.server.valgrind_out) + ".%d." % self.pid
        return sorted(os.path.join(d, f) for f in os.listdir(d) if f.startswith(base))

    @staticmethod
    def _total(path):
        with open(path) as f:
            for line in f:
                if line.startswith("totals:") or line.startswith("summary:"):
                    return int(line.split()[1])
        return 0

    @staticmethod
    def _requests(path):
        """Requests served in a dump: the calls made to ap_process_request."""
        names = {}
        n = 0
        cur = None
        with open(path) as f:
            for line in f:
                if line.startswith("cfn=") or line.startswith("fn="):
                    m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line.strip())
                    if m:
                        if m.group(2):
                            names[m.group(1)] = m.group(2)
                        if line.startswith("cfn="):
                            cur = names.get(m.group(1))
                elif line.startswith("calls=") and cur == "ap_process_request":
                    n += int(line.split("=")[1].split()[0])
        return n

    def _settle(self, quiet=1.0, limit=30.0):
        """Wait until no new dump has appeared for `quiet` seconds, then
        mark every dump as seen: earlier connections are accounted for."""
        deadline = time.monotonic() + limit
        last = self._files()
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self._files()
            if now != last:
                last, stable_since = now, time.monotonic()
            elif time.monotonic() - stable_since >= quiet:
                break
        self.seen.update(last)

    def connection(self, send, k):
        """Run send(k) on one connection; return (instructions counted for
        it, its dump files).  Only the request thread is ever inside
        ap_process_connection, so background threads count zero; the
        dump must hold exactly k requests."""
        self._settle()
        send(k)
        deadline = time.monotonic() + 60
        new, got = [], 0
        while time.monotonic() < deadline:
            new = [f for f in self._files() if f not in self.seen]
            got = sum(self._requests(f) for f in new)
            if got >= k:
                break
            time.sleep(0.1)
        self.seen.update(new)
        if got != k:
            raise RuntimeError("callgrind dumps hold %d requests, expected %d" % (got, k))
        return sum(self._total(f) for f in new), new

    def measure(self, send, n, warmup=20):
        """send(k) issues k identical requests on one connection."""
        self.connection(send, warmup)
        i1, f1 = self.connection(send, n)
        i2, f2 = self.connection(send, 2 * n)
        return {"per_req": (i2 - i1) / n, "I_N": i1, "I_2N": i2, "N": n,
                "files_N": f1, "files_2N": f2}


_ANN_RE = re.compile(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(\S.*)$")


def _annotate(files, needle, inclusive=True):
    """{function: Ir} for functions whose line mentions needle."""
    out = {}
    for f in files:
        p = subprocess.run(["callgrind_annotate", "--inclusive=%s" % ("yes" if inclusive else "no"),
                            "--threshold=100", "--auto=no", f],
                           capture_output=True, text=True, timeout=120)
        for line in p.stdout.splitlines():
            m = _ANN_RE.match(line)
            if m and needle in m.group(2) and not m.group(2).startswith(("=>", "<")):
                name = m.group(2).split(" [")[0]
                out[name] = out.get(name, 0) + int(m.group(1).replace(",", ""))
    return out


def self_profile(result):
    """Per-request exclusive instructions of every function (the N and 2N
    dumps of a measure() differenced); they add up to per_req."""
    a = _annotate(result["files_N"], "", inclusive=False)
    b = _annotate(result["files_2N"], "", inclusive=False)
    # The frames that were on the stack when counting switched on (main,
    # the MPM loop) are shown with the whole window's cost: not their own.
    frames = {fn for fn, v in b.items() if v == b.get("PROGRAM TOTALS")}
    return {fn: (b.get(fn, 0) - a.get(fn, 0)) / result["N"]
            for fn in set(a) | set(b) if fn not in frames}


def profile_diff(base, other, top=12):
    """Functions whose own cost per request differs most between two
    measure() results of the same binary: where an overhead goes."""
    pa, pb = self_profile(base), self_profile(other)
    rows = [(fn, pb.get(fn, 0) - pa.get(fn, 0)) for fn in set(pa) | set(pb)]
    rows.sort(key=lambda x: -abs(x[1]))
    return rows[:top]


def module_breakdown(result, needle, top=10):
    """Per-request inclusive instructions of the functions of one object
    (e.g. "mod_mailguard"), from the N and 2N dumps of a measure()."""
    a = _annotate(result["files_N"], needle)
    b = _annotate(result["files_2N"], needle)
    rows = [(fn, (b.get(fn, 0) - a.get(fn, 0)) / result["N"]) for fn in set(a) | set(b)]
    rows.sort(key=lambda x: -x[1])
    return rows[:top]


def keepalive_sender(port, path, headers=(), method="GET", body=b"", expect=200):
    """send(k): k requests on one keep-alive connection (like wrk)."""
    def send(k):
        c = HttpConn(port, timeout=60)
        try:
            for _ in range(k):
                st, _, _ = c.request(path, method, headers, body)
                if st != expect:
                    raise RuntimeError("%s answered %d, expected %d" % (path, st, expect))
        finally:
            c.close()
    return send


# ---------------------------------------------------------------- verdicts

class Report:
    """Collects PASS/FAIL lines and prints the summary; exit code 1 when any
    target failed (or could not be measured)."""

    def __init__(self, title, harness=False):
        self.title = title
        self.harness = harness
        self.lines = []
        self.failed = False

    def check(self, name, ok, measured, target):
        verdict = "PASS" if ok else "FAIL"
        if self.harness:
            # Identical servers without the module: the verdict shows the
            # harness works, it judges nothing.
            verdict = "HARNESS-" + verdict
        elif not ok:
            self.failed = True
        self.lines.append("%s  %s: %s (target %s)" % (verdict, name, measured, target))
        print("%s  %s: %s (target %s)" % (verdict, name, measured, target), flush=True)

    def info(self, text):
        self.lines.append("INFO  " + text)
        print("INFO  " + text, flush=True)

    def skip(self, name, why):
        self.failed = True
        self.lines.append("FAIL  %s: not measured: %s" % (name, why))
        print("FAIL  %s: not measured: %s" % (name, why), flush=True)

    def finish(self):
        print("---- %s summary" % self.title)
        for x in self.lines:
            print(x)
        sys.stdout.flush()
        return 1 if self.failed else 0


def section(title):
    print("\n## %s" % title, flush=True)


def harness_only():
    """--harness-only (or no module built): compare identical servers
    without the module, to validate the harness and show the noise."""
    return "--harness-only" in sys.argv
