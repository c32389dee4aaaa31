"""The real webmail applications, set up in a test's temporary directory.

RoundcubeSite: Debian's roundcube package (code in /usr/share/roundcube)
with a configuration generated here: its own INSTALL_PATH directory
(index.php, symlinks to the package's program/ and skins/, config/,
plugins/, temp/, logs/) and an SQLite database made from the package's
schema.  Nothing in /etc/roundcube or /var/lib/roundcube is read or
changed.

SquirrelMailSite: the SquirrelMail 1.4.23 tree from ../shared/thirdparty
(relative to the repository root), copied here, with config/config.php
written from config_default.php.

Both point at a test Dovecot and can load the project's plugin
(mod_mailguard/webmail/...).

PhpFpm: php-fpm8.2 in the foreground on a private Unix socket, for the
mod_proxy_fcgi tests.

Browser: one client address (127.0.0.N), its cookies, and the login forms
the way a browser or a brute-forcer sends them.
"""
import glob
import http.client
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PLUGINS = os.path.join(ROOT, "mod_mailguard", "webmail")
RC_CODE = "/usr/share/roundcube"
RC_DEFAULTS = "/etc/roundcube/defaults.inc.php"
SQM_TREE = os.path.abspath(os.path.join(ROOT, "..", "shared", "thirdparty",
                                        "squirrelmail-1.4.23"))
PHP = shutil.which("php") or "/usr/bin/php"
PHP_FPM = (sorted(glob.glob("/usr/sbin/php-fpm*")) or ["/usr/sbin/php-fpm8.2"])[-1]


def have_roundcube():
    return os.path.exists(os.path.join(RC_CODE, "index.php")) and os.path.exists(RC_DEFAULTS)


def have_squirrelmail():
    return os.path.exists(os.path.join(SQM_TREE, "src", "redirect.php"))


def have_php_fpm():
    return os.path.exists(PHP_FPM)


def _www_data():
    ent = pwd.getpwnam("www-data")
    return ent.pw_uid, ent.pw_gid


def _chown_tree(path):
    uid, gid = _www_data()
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, uid, gid)
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            if not os.path.islink(p):
                os.chown(p, uid, gid)


def _php_str(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


class RoundcubeSite:
    """A Roundcube installation for one test server."""

    def __init__(self, imap_port, plugin=True, extra_config=""):
        self.root = tempfile.mkdtemp(prefix="mg-roundcube-")
        os.chmod(self.root, 0o755)
        self.dir = os.path.join(self.root, "rc")
        os.makedirs(self.dir)
        with open(os.path.join(self.dir, "index.php"), "w") as f:
            f.write("<?php\n// The package's index.php, with this directory as INSTALL_PATH.\n"
                    "define('INSTALL_PATH', __DIR__ . '/');\n"
                    "require %s;\n" % _php_str(os.path.join(RC_CODE, "index.php")))
        # Httpd.start() waits for /static.txt.
        with open(os.path.join(self.dir, "static.txt"), "w") as f:
            f.write("static\n")
        for name in ("program", "skins"):
            os.symlink(os.path.join(RC_CODE, name), os.path.join(self.dir, name))
        for sub in ("config", "plugins", "temp", "logs", "db"):
            os.makedirs(os.path.join(self.dir, sub))
        os.symlink(RC_DEFAULTS, os.path.join(self.dir, "config", "defaults.inc.php"))
        # Roundcube's own plugins (some are required: filesystem_attachments,
        # jqueryui), then ours.
        for p in glob.glob(os.path.join(RC_CODE, "plugins", "*")):
            os.symlink(p, os.path.join(self.dir, "plugins", os.path.basename(p)))
        if plugin:
            shutil.copytree(os.path.join(PLUGINS, "roundcube", "mailguard"),
                            os.path.join(self.dir, "plugins", "mailguard"))
        self.db = os.path.join(self.dir, "db", "roundcube.db")
        subprocess.run([PHP, "-r", """
            $db = new PDO('sqlite:' . $argv[1]);
            $db->exec(file_get_contents($argv[2]));
        """, self.db, os.path.join(RC_CODE, "SQL", "sqlite.initial.sql")],
                       check=True, capture_output=True, timeout=60)
        with open(os.path.join(self.dir, "config", "config.inc.php"), "w") as f:
            f.write("""<?php
// generated for one test; see tests/integration/support/webmail.py
$config = [];
$config['db_dsnw'] = 'sqlite:///' . {db} . '?mode=0646';
$config['imap_host'] = '127.0.0.1:{port}';
$config['imap_timeout'] = 10;
$config['smtp_host'] = '';
$config['des_key'] = 'mailguard-test-des-key!!';
$config['plugins'] = [{plugins}];
$config['skin'] = 'elastic';
$config['log_driver'] = 'file';
$config['log_dir'] = {logs};
$config['temp_dir'] = {temp};
$config['log_logins'] = true;
$config['enable_installer'] = false;
$config['enable_spellcheck'] = false;
{extra}
""".format(db=_php_str(self.db), port=imap_port, logs=_php_str(os.path.join(self.dir, "logs")),
           temp=_php_str(os.path.join(self.dir, "temp")),
           plugins="'mailguard'" if plugin else "", extra=extra_config))
        for dirpath, dirnames, filenames in os.walk(self.root):
            for d in dirnames:
                p = os.path.join(dirpath, d)
                if not os.path.islink(p):
                    os.chmod(p, 0o755)
            for fn in filenames:
                p = os.path.join(dirpath, fn)
                if not os.path.islink(p):
                    os.chmod(p, 0o644)
        for sub in ("temp", "logs", "db"):
            _chown_tree(os.path.join(self.dir, sub))

    def vhost_conf(self):
        return """
    DocumentRoot "{d}"
    <Directory "{d}">
        Options FollowSymLinks
        AllowOverride None
        Require all granted
    </Directory>
""".format(d=self.dir)

    def log(self, name):
        try:
            with open(os.path.join(self.dir, "logs", name), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


class SquirrelMailSite:
    """SquirrelMail 1.4.23 served at /, for one test server."""

    def __init__(self, imap_port, plugin=True):
        self.root = tempfile.mkdtemp(prefix="mg-squirrelmail-")
        os.chmod(self.root, 0o755)
        self.dir = os.path.join(self.root, "sqm")
        shutil.copytree(SQM_TREE, self.dir, symlinks=True)
        if plugin:
            shutil.copytree(os.path.join(PLUGINS, "squirrelmail", "mailguard"),
                            os.path.join(self.dir, "plugins", "mailguard"))
        with open(os.path.join(self.dir, "static.txt"), "w") as f:
            f.write("static\n")
        data = os.path.join(self.root, "data")
        attach = os.path.join(self.root, "attach")
        os.makedirs(data)
        os.makedirs(attach)
        with open(os.path.join(self.dir, "config", "config_default.php")) as f:
            conf = f.read()

        def setvar(text, name, value):
            pat = re.compile(r"^\$%s\s*=.*?;\s*$" % re.escape(name), re.M)
            if not pat.search(text):
                raise RuntimeError("config_default.php has no $%s" % name)
            return pat.sub(lambda m: "$%s = %s;" % (name, value), text, count=1)

        conf = setvar(conf, "imapServerAddress", "'127.0.0.1'")
        conf = setvar(conf, "imapPort", str(imap_port))
        conf = setvar(conf, "imap_server_type", "'dovecot'")
        conf = setvar(conf, "useSendmail", "true")
        conf = setvar(conf, "data_dir", _php_str(data + "/"))
        conf = setvar(conf, "attachment_dir", _php_str(attach + "/"))
        conf = setvar(conf, "domain", "'example.org'")
        conf += "\n$plugins = array(%s);\n" % ("'mailguard'" if plugin else "")
        with open(os.path.join(self.dir, "config", "config.php"), "w") as f:
            f.write(conf)
        for dirpath, dirnames, filenames in os.walk(self.root):
            for d in dirnames:
                os.chmod(os.path.join(dirpath, d), 0o755)
            for fn in filenames:
                p = os.path.join(dirpath, fn)
                if not os.path.islink(p):
                    os.chmod(p, 0o644)
        _chown_tree(data)
        _chown_tree(attach)

    def vhost_conf(self):
        return """
    DocumentRoot "{d}"
    <Directory "{d}">
        Options None
        AllowOverride None
        Require all granted
    </Directory>
""".format(d=self.dir)

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


class PhpFpm:
    """php-fpm in the foreground, one static pool on a private socket."""

    def __init__(self, children=4):
        self.root = tempfile.mkdtemp(prefix="mg-fpm-")
        os.chmod(self.root, 0o755)
        self.socket = os.path.join(self.root, "php-fpm.sock")
        self.conf = os.path.join(self.root, "php-fpm.conf")
        self.log = os.path.join(self.root, "php-fpm.log")
        with open(self.conf, "w") as f:
            f.write("""; generated for one test; see tests/integration/support/webmail.py
[global]
pid = {root}/php-fpm.pid
error_log = {log}
daemonize = no

[mailguard]
user = www-data
group = www-data
listen = {sock}
listen.owner = www-data
listen.group = www-data
listen.mode = 0660
pm = static
pm.max_children = {n}
catch_workers_output = yes
php_admin_flag[display_errors] = off
php_admin_flag[log_errors] = on
""".format(root=self.root, log=self.log, sock=self.socket, n=children))
        self.proc = None

    def start(self, timeout=15):
        self.proc = subprocess.Popen([PHP_FPM, "-F", "-y", self.conf],
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.root, "stderr.log"), "w"),
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("php-fpm exited (%d)" % self.proc.returncode)
            if os.path.exists(self.socket):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("php-fpm did not create %s" % self.socket)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def handler_conf(self):
        """Apache configuration that sends .php to this pool."""
        return ('<FilesMatch "\\.php$">\n'
                '    SetHandler "proxy:unix:%s|fcgi://localhost"\n'
                '</FilesMatch>\n' % self.socket)


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers      # list of (name, value), names lower-case
        self.body = body

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def __repr__(self):
        return "<Reply %d>" % self.status


_TOKEN = re.compile(r'name="_token" value="([^"]+)"')


class Browser:
    """One client: its source address and its cookies."""

    def __init__(self, srv, src="127.0.0.1", xff=None):
        self.srv = srv
        self.src = src
        self.xff = xff
        self.cookies = {}

    def request(self, method, path, body=None, cookies=True, headers=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=timeout,
                                          source_address=(self.src, 0))
        h = {"Host": "127.0.0.1:%d" % self.srv.port, "User-Agent": "mailguard-test"}
        if body is not None:
            h["Content-Type"] = "application/x-www-form-urlencoded"
            if not isinstance(body, str):
                body = urllib.parse.urlencode(body)
        if cookies and self.cookies:
            h["Cookie"] = "; ".join("%s=%s" % kv for kv in self.cookies.items())
        if self.xff:
            h["X-Forwarded-For"] = self.xff
        h.update(headers or {})
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read().decode("utf-8", "replace") if method != "HEAD" else ""
            hdrs = [(k.lower(), v) for k, v in resp.getheaders()]
        finally:
            conn.close()
        if cookies:
            for k, v in hdrs:
                if k == "set-cookie":
                    name, _, rest = v.partition("=")
                    value = rest.split(";", 1)[0]
                    if value in ("deleted", "-del-", ""):
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = value
        return Reply(resp.status, hdrs, data)

    # ---- Roundcube ----
    def roundcube_form(self):
        """GET the login form: the session cookie and the request token."""
        r = self.request("GET", "/?_task=login")
        m = _TOKEN.search(r.body)
        if r.status != 200 or not m:
            raise RuntimeError("no Roundcube login form (%d): %s" % (r.status, r.body[:300]))
        return m.group(1)

    def roundcube_login(self, user, password, query="_task=login", extra=None, token=True):
        """The login POST as Roundcube's form sends it; `extra` adds or
        overrides body fields, token=False sends none (and no cookies)."""
        body = {"_task": "login", "_action": "login", "_timezone": "UTC", "_url": "",
                "_user": user, "_pass": password}
        if token:
            body["_token"] = self.roundcube_form()
        body.update(extra or {})
        return self.request("POST", "/?" + query if query else "/", body=body, cookies=token)

    # ---- SquirrelMail ----
    def squirrelmail_login(self, user, password, method="POST", query_credentials=False):
        self.request("GET", "/src/login.php")
        creds = {"login_username": user, "secretkey": password,
                 "js_autodetect_results": "1", "just_logged_in": "1"}
        if query_credentials or method != "POST":
            return self.request(method, "/src/redirect.php?" + urllib.parse.urlencode(creds))
        return self.request("POST", "/src/redirect.php", body=creds)
