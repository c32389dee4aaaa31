"""A real apache2 from a generated configuration, for integration tests.

Each server lives in its own temporary ServerRoot (configuration, document
root, logs, runtime files), listens on free ports on 127.0.0.1 and [::1],
runs in the foreground as a child of the test (`apache2 -f CONF
-DFOREGROUND`) and is stopped by its PID.  Modules come from Debian's
/usr/lib/apache2/modules; mod_mailguard from $MG_BUILD.

Two flavours:
  mpm="event"               threaded; the login stand-in is a <Location
                            /login/> guarded by HTTP Basic auth, so a POST
                            without credentials is answered 401 (silently,
                            no error-log line), like a failed Roundcube
                            login, with no PHP involved.
  mpm="prefork", php=True   mod_php; the document root holds the PHP
                            stand-ins from tests/integration/www (Roundcube
                            index.php, SquirrelMail src/redirect.php, a
                            generic other/login.php).  Every PHP run is
                            appended to logs/php-runs.log, so a test can
                            prove that a denied request never reached PHP.

At stop, the error log is checked: any line at level error or worse, or a
child that died from a signal, fails the test unless it matches one of the
server's allow-list patterns.

Requests are made with curl (the tool an administrator would use), which
also gives per-request source addresses (--interface 127.0.0.N) and the
time the request took as seen by the client.
"""
import base64
import glob
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from .ports import free_port

APACHE2 = shutil.which("apache2") or "/usr/sbin/apache2"
CURL = shutil.which("curl") or "/usr/bin/curl"
MODDIR = "/usr/lib/apache2/modules"
WWW = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "www"))
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BUILD = os.environ.get("MG_BUILD", os.path.join(ROOT, "build"))
# `make asan-test` runs these tests against a sanitizer build of the module:
# httpd itself is not instrumented, so the ASan runtime is preloaded, and
# any report aborts the child (a crash the error-log check catches) and is
# also looked for in the server's stderr.
SANITIZER_PRELOAD = os.environ.get("MG_SANITIZER_PRELOAD")
_SANITIZER_REPORT = re.compile(r"AddressSanitizer|runtime error:|LeakSanitizer")


def _server_env():
    if not SANITIZER_PRELOAD:
        return None
    env = dict(os.environ)
    env["LD_PRELOAD"] = SANITIZER_PRELOAD
    # httpd does not free everything at exit by design: leaks are checked
    # with valgrind in a one-process test instead.
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1"
    env["UBSAN_OPTIONS"] = "halt_on_error=1:abort_on_error=1:print_stacktrace=1"
    # PHP dlopens its extensions with RTLD_DEEPBIND, which the ASan runtime
    # refuses; the stand-in pages need none of them.
    env["PHP_INI_SCAN_DIR"] = ""
    return env

# The password every stand-in accepts; anything else is a failed login.
GOOD_PASSWORD = "right"
# Basic-auth account of the event-MPM login stand-in.
BASIC_USER = "alice"

# Error-log levels that fail a test unless allowed.
_BAD_LEVEL = re.compile(r"\[[A-Za-z0-9_.]*:(error|crit|alert|emerg)\]")
_CRASH = re.compile(r"exit signal|AH00052|Segmentation fault|AH00051|AH02853")

_MODULES_COMMON = [
    ("authz_core_module", "mod_authz_core.so"),
    ("authz_host_module", "mod_authz_host.so"),
    ("authz_user_module", "mod_authz_user.so"),
    ("authn_core_module", "mod_authn_core.so"),
    ("authn_file_module", "mod_authn_file.so"),
    ("auth_basic_module", "mod_auth_basic.so"),
    ("mime_module", "mod_mime.so"),
    ("dir_module", "mod_dir.so"),
    ("alias_module", "mod_alias.so"),
    ("env_module", "mod_env.so"),
    ("remoteip_module", "mod_remoteip.so"),
]


def _have_ipv6_loopback():
    try:
        free_port("::1")
        return True
    except OSError:
        return False


# Some containers run without IPv6: then the servers listen on 127.0.0.1
# only and the tests that need a direct IPv6 client are skipped.
HAVE_IPV6 = _have_ipv6_loopback()


def module_path(build=None):
    return os.path.join(build or BUILD, "mod_mailguard.so")


def module_symbol(path):
    """The module record's name exported by the .so (e.g. mailguard_module)."""
    out = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True,
                         text=True, check=False).stdout
    names = [l.split()[-1] for l in out.splitlines()
             if l.split() and l.split()[-1].endswith("_module")
             and "." not in l.split()[-1]]   # ASan adds __odr_asan.<name>
    if len(names) != 1:
        raise RuntimeError("cannot tell the module record in %s: %r" % (path, names))
    return names[0]


def have_module(build=None):
    return os.path.exists(module_path(build))


class Response:
    def __init__(self, status, seconds, location, body):
        self.status = status
        self.seconds = seconds
        self.location = location
        self.body = body

    def __repr__(self):
        return "<Response %d %.3fs>" % (self.status, self.seconds)


class Httpd:
    """One apache2 server.  Build with kwargs, then start()/stop()."""

    def __init__(self, build=None, mpm="event", php=False, module=True,
                 redis=None, server_conf="", vhost_conf="", log_level="notice",
                 allow=(), copies=(), sync_interval="1s", name="httpd", fpm=None,
                 extra_modules=(), php_admin=True):
        self.build = build or BUILD
        self.mpm = mpm
        self.php = php
        # fpm: a support.webmail.PhpFpm; .php goes to it through
        # mod_proxy_fcgi instead of mod_php.
        self.fpm = fpm
        self.extra_modules = list(extra_modules)
        # php_admin=False leaves PHP's error settings to the application
        # (Roundcube refuses to run when it cannot set error_reporting).
        self.php_admin = php_admin
        self.module = module
        self.redis = redis              # URL, "none", or None (directive left out)
        self.server_conf = server_conf
        self.vhost_conf = vhost_conf
        self.log_level = log_level
        self.allow = [re.compile(a) for a in allow]
        self.sync_interval = sync_interval
        self.name = name
        self.port = free_port("127.0.0.1")
        self.port6 = free_port("::1") if HAVE_IPV6 else None
        # Not pytest's tmp_path: its parents are private to root, and a root
        # parent drops to www-data, which must read the document root.
        self.root = tempfile.mkdtemp(prefix="mg-%s-" % name)
        os.chmod(self.root, 0o755)
        self.docroot = os.path.join(self.root, "htdocs")
        self.logdir = os.path.join(self.root, "logs")
        self.rundir = os.path.join(self.root, "run")
        self.conf = os.path.join(self.root, "httpd.conf")
        self.errlog = os.path.join(self.logdir, "error.log")
        self.accesslog = os.path.join(self.logdir, "access.log")
        self.phplog = os.path.join(self.logdir, "php-runs.log")
        self.proc = None
        self.checked_upto = 0
        self._populate(copies)
        self.write_conf()

    # ---- files ----
    def _populate(self, copies):
        shutil.copytree(WWW, self.docroot)
        for sub in copies:
            shutil.copytree(WWW, os.path.join(self.docroot, sub))
        os.makedirs(os.path.join(self.docroot, "login"), exist_ok=True)
        with open(os.path.join(self.docroot, "login", "index.html"), "w") as f:
            f.write("<html><body>webmail</body></html>\n")
        with open(os.path.join(self.docroot, "static.txt"), "w") as f:
            f.write("static\n")
        os.makedirs(self.logdir)
        os.makedirs(self.rundir)
        open(self.phplog, "w").close()
        os.chmod(self.phplog, 0o666)   # written by PHP as the run user
        sha = base64.b64encode(hashlib.sha1(GOOD_PASSWORD.encode()).digest()).decode()
        with open(os.path.join(self.root, "htpasswd"), "w") as f:
            f.write("%s:{SHA}%s\n" % (BASIC_USER, sha))
        for dirpath, dirnames, filenames in os.walk(self.root):
            for d in dirnames:
                os.chmod(os.path.join(dirpath, d), 0o755)
            for fn in filenames:
                p = os.path.join(dirpath, fn)
                if p != self.phplog:
                    os.chmod(p, 0o644)

    def _modules(self):
        lines = []
        if self.mpm == "prefork":
            lines.append(("mpm_prefork_module", "mod_mpm_prefork.so"))
        else:
            lines.append(("mpm_%s_module" % self.mpm, "mod_mpm_%s.so" % self.mpm))
        lines += _MODULES_COMMON
        lines += [(m, "mod_%s.so" % m[:-len("_module")]) for m in self.extra_modules]
        if self.fpm is not None:
            lines += [("proxy_module", "mod_proxy.so"), ("proxy_fcgi_module", "mod_proxy_fcgi.so")]
        elif self.php:
            php = sorted(glob.glob(os.path.join(MODDIR, "libphp*.so")))
            if not php:
                raise RuntimeError("no libphp*.so in %s (libapache2-mod-php)" % MODDIR)
            lines.append(("php_module", os.path.basename(php[-1])))
        out = ["LoadModule %s %s/%s" % (n, MODDIR, f) for n, f in lines]
        if self.module:
            so = module_path(self.build)
            out.append("LoadModule %s %s" % (module_symbol(so), so))
        return "\n".join(out)

    def _mpm_conf(self):
        if self.mpm == "prefork":
            return ("StartServers 2\nMinSpareServers 1\nMaxSpareServers 4\n"
                    "MaxRequestWorkers 16\n")
        # Two processes, so a ban made in one must be seen by the other.
        return ("StartServers 2\nServerLimit 2\nThreadsPerChild 8\n"
                "MinSpareThreads 8\nMaxSpareThreads 16\nMaxRequestWorkers 16\n")

    def config_text(self, server_conf=None, vhost_conf=None):
        server_conf = self.server_conf if server_conf is None else server_conf
        vhost_conf = self.vhost_conf if vhost_conf is None else vhost_conf
        user = ""
        if os.geteuid() == 0:
            user = "User www-data\nGroup www-data\n"
        mg = ""
        if self.module:
            if self.redis is not None:
                mg += "MailGuardRedis %s\n" % self.redis
            if self.sync_interval:
                mg += "MailGuardSyncInterval %s\n" % self.sync_interval
        php = ""
        if self.fpm is not None:
            php = self.fpm.handler_conf()
        elif self.php:
            php = '<FilesMatch "\\.php$">\n    SetHandler application/x-httpd-php\n</FilesMatch>\n'
            if self.php_admin:
                php += ('php_admin_value error_reporting -1\n'
                        'php_admin_flag display_errors Off\nphp_admin_flag log_errors On\n')
        return """# generated for one test; see tests/integration/support/httpd.py
ServerRoot "{root}"
DefaultRuntimeDir "{run}"
PidFile "{run}/httpd.pid"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
{listen6}
{user}{modules}
{mpm}
ErrorLog "{logs}/error.log"
LogLevel {level}
LogFormat "%a %{{c}}a %>s %m %U%q %D" mg
CustomLog "{logs}/access.log" mg
TypesConfig /etc/mime.types
Timeout 10
GracefulShutdownTimeout 5
KeepAlive On
DocumentRoot "{docroot}"
DirectoryIndex index.php index.html
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory "{docroot}">
    Options None
    AllowOverride None
    Require all granted
</Directory>
SetEnv MG_PHP_LOG "{phplog}"
{php}
RemoteIPHeader X-Forwarded-For
RemoteIPInternalProxy 127.0.0.1
{mg}
{server_conf}
<VirtualHost 127.0.0.1:{port} {vhost6}>
    ServerName 127.0.0.1
    DocumentRoot "{docroot}"
    # The event-MPM login stand-in: HTTP Basic auth answers a POST without
    # credentials with 401, silently, like a failed Roundcube login.
    <Location "/login/">
        AuthType Basic
        AuthName "webmail"
        AuthBasicProvider file
        AuthUserFile "{root}/htpasswd"
        Require valid-user
    </Location>
{vhost_conf}
</VirtualHost>
""".format(root=self.root, run=self.rundir, port=self.port,
           listen6="Listen [::1]:%d" % self.port6 if self.port6 else "",
           vhost6="[::1]:%d" % self.port6 if self.port6 else "",
           user=user, modules=self._modules(), mpm=self._mpm_conf(),
           logs=self.logdir, level=self.log_level, docroot=self.docroot,
           phplog=self.phplog, php=php, mg=mg, server_conf=server_conf,
           vhost_conf=vhost_conf)

    def write_conf(self, **kw):
        with open(self.conf, "w") as f:
            f.write(self.config_text(**kw))
        os.chmod(self.conf, 0o644)

    # ---- life cycle ----
    def configtest(self):
        """`apache2 -t` on the current configuration: (returncode, output)."""
        p = subprocess.run([APACHE2, "-t", "-f", self.conf], capture_output=True,
                           text=True, timeout=30, env=_server_env())
        return p.returncode, p.stdout + p.stderr

    def start(self, timeout=15):
        rc, out = self.configtest()
        if rc != 0:
            raise RuntimeError("apache2 -t failed for %s:\n%s" % (self.conf, out))
        self.proc = subprocess.Popen([APACHE2, "-f", self.conf, "-DFOREGROUND"],
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.logdir, "stderr.log"), "w"),
                                     start_new_session=True, env=_server_env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("apache2 exited (%d) at start:\n%s" %
                                   (self.proc.returncode, self.errlog_text()[-4000:]))
            try:
                r = self.get("/static.txt", timeout=2)
                if r.status == 200:
                    return self
            except RuntimeError:
                pass
            time.sleep(0.05)
        self.stop(check=False)
        raise RuntimeError("apache2 did not answer on port %d" % self.port)

    def graceful(self):
        """apachectl graceful: SIGUSR1 to the parent by its PID."""
        self.proc.send_signal(signal.SIGUSR1)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, check=True, sig=None):
        """Stop by PID, as Debian's apache2.service does: graceful-stop
        (SIGWINCH) for the event MPM, bounded by GracefulShutdownTimeout,
        SIGTERM for prefork; SIGKILL of the process group if it hangs.

        Not SIGTERM for the event MPM: its ungraceful stop closes the
        sockets of connections still in progress from the child's main
        thread while their workers free them (close_worker_sockets in
        httpd's event.c), a race in httpd that now and then ends a child
        with SIGSEGV at exit, whatever the modules loaded.  sig: another
        signal (apache2 -X knows no graceful stop)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                if sig is None:
                    sig = signal.SIGWINCH if self.mpm == "event" else signal.SIGTERM
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=10)
            self.proc = None
        if check:
            self.check_errlog()

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- logs ----
    def errlog_text(self):
        try:
            with open(self.errlog, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def errlog_lines(self, since=0):
        """Error-log lines from byte offset `since` (see mark())."""
        return self.errlog_text()[since:].splitlines()

    def mark(self):
        """The error log's current length: pass to errlog_lines(since=)."""
        return len(self.errlog_text())

    def unexpected_errors(self):
        bad = []
        # Sanitizer reports go to stderr, which httpd points at the error
        # log once it runs; no allow-list excuses them.
        try:
            with open(os.path.join(self.logdir, "stderr.log"), errors="replace") as f:
                bad += [l for l in f.read().splitlines() if _SANITIZER_REPORT.search(l)]
        except FileNotFoundError:
            pass
        bad += [l for l in self.errlog_lines() if _SANITIZER_REPORT.search(l)]
        for line in self.errlog_lines():
            if _BAD_LEVEL.search(line) or _CRASH.search(line):
                if not any(a.search(line) for a in self.allow):
                    bad.append(line)
        return bad

    def check_errlog(self):
        bad = self.unexpected_errors()
        if bad:
            pytest.fail("%s: unexpected error-log lines (%s):\n%s" %
                        (self.name, self.errlog, "\n".join(bad[:20])), pytrace=False)

    def php_runs(self):
        """Lines of the PHP run log: one per execution of a stand-in page."""
        with open(self.phplog) as f:
            return f.read().splitlines()

    def access_log(self):
        with open(self.accesslog) as f:
            return f.read().splitlines()

    # ---- requests ----
    def url(self, path, v6=False):
        if v6:
            if not self.port6:
                pytest.skip("no IPv6 loopback here")
            return "http://[::1]:%d%s" % (self.port6, path)
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def request(self, path, method="GET", data=None, src=None, xff=None,
                http10=False, v6=False, timeout=5, headers=()):
        """One request with curl.  src: source address (127.0.0.N or ::1);
        xff: X-Forwarded-For value.  Returns a Response (status, seconds as
        curl measured them, Location, body)."""
        args = [CURL, "-sS", "--max-time", str(timeout), "-X", method,
                "-w", "\n@@mg@@ %{http_code} %{time_total} %{redirect_url}"]
        if http10:
            args.append("--http1.0")
        if src:
            args += ["--interface", src]
        if xff:
            args += ["-H", "X-Forwarded-For: %s" % xff]
        for h in headers:
            args += ["-H", h]
        if data is not None:
            args += ["--data-raw", data]
        args.append(self.url(path, v6=v6))
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 5)
        out = p.stdout
        idx = out.rfind("\n@@mg@@ ")
        if p.returncode != 0 or idx < 0:
            raise RuntimeError("curl %s failed (%d): %s" % (path, p.returncode, p.stderr.strip()))
        fields = out[idx + 8:].split(" ", 2)
        status = int(fields[0])
        if status == 0:
            raise RuntimeError("curl %s: no response (%s)" % (path, p.stderr.strip()))
        location = fields[2].strip() if len(fields) > 2 else ""
        return Response(status, float(fields[1]), location, out[:idx])

    def get(self, path, **kw):
        return self.request(path, "GET", **kw)

    def post(self, path, data, **kw):
        return self.request(path, "POST", data=data, **kw)

    # Stand-in logins.  Each returns the Response.
    def roundcube_login(self, password, user="bob", prefix="", **kw):
        data = ("_token=t0k3n&_task=login&_action=login&_timezone=UTC&_url=&"
                "_user=%s&_pass=%s" % (user, password))
        return self.post("%s/?_task=login" % prefix, data, **kw)

    def squirrelmail_login(self, password, user="bob", prefix="", **kw):
        data = ("login_username=%s&secretkey=%s&js_autodetect_results=1&"
                "just_logged_in=1" % (user, password))
        return self.post("%s/src/redirect.php" % prefix, data, **kw)

    def basic_login_fail(self, **kw):
        """Event-MPM stand-in: a Roundcube-shaped login POST answered 401."""
        return self.post("/login/?_task=login", "_task=login&_user=bob&_pass=wrong", **kw)

    # ---- waiting ----
    def wait_status(self, path, status, within, step=0.05, **kw):
        """Poll GET path until it answers `status`; the seconds it took, or
        None when it did not within `within` seconds."""
        t0 = time.monotonic()
        while True:
            r = self.get(path, **kw)
            if r.status == status:
                return time.monotonic() - t0
            if time.monotonic() - t0 > within:
                return None
            time.sleep(step)


def httpd_factory_impl(request):
    servers = []

    def make(start=True, **kw):
        srv = Httpd(**kw)
        servers.append(srv)
        if start:
            srv.start()
        return srv

    yield make
    failures = []
    for srv in servers:
        try:
            srv.stop(check=False)
        finally:
            bad = srv.unexpected_errors()
            if bad:
                failures.append("%s (%s):\n%s" % (srv.name, srv.errlog, "\n".join(bad[:20])))
    # MG_KEEP=1 keeps every ServerRoot (config, logs) for a post-mortem.
    if not failures and not os.environ.get("MG_KEEP"):
        for srv in servers:
            srv.cleanup()
    if failures:
        pytest.fail("unexpected error-log lines:\n" + "\n\n".join(failures), pytrace=False)


@pytest.fixture
def httpd_factory(request):
    """make(**Httpd kwargs) -> a started Httpd.  All servers are stopped at
    teardown, and the test fails on an unexpected error-log line or a
    crashed child.  Ask for redis fixtures BEFORE this one in a test's
    arguments, so that httpd stops before its Redis does."""
    yield from httpd_factory_impl(request)


@pytest.fixture
def need_module():
    if not have_module():
        pytest.fail("mod_mailguard.so not built in %s (make B=... all)" % BUILD)
