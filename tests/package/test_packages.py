"""The Debian packages, as an administrator meets them: installed with
apt-get from build/deb/ (make deb), the module enabled with a2enmod and
loaded by Apache's own configuration, the daemon run, the unit checked by
systemd, then everything purged, leaving no file of theirs and the
machine as it was.

Root only (it changes the system's package set); run by `make
package-test` after `make deb`.  No service is started: policy-rc.d
refuses every start, and the packages start none of their own anyway
(dbmail-tap's unit is not enabled at installation).  The tests run in
file order and share one installation."""
import glob
import gzip
import os
import shutil
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEB_DIR = os.path.join(ROOT, "build", "deb")
PACKAGES = ("libapache2-mod-mailguard", "dbmail-tap")
POLICY_RC_D = "/usr/sbin/policy-rc.d"
# State outside the packages' own files that installing, enabling and
# purging touch: it must read the same before and after.
STATE_DIRS = ("/etc/apache2/mods-enabled", "/var/lib/apache2/module", "/etc/systemd/system",
              "/var/lib/systemd/deb-systemd-helper-enabled",
              "/var/lib/systemd/deb-systemd-helper-masked")
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300"]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="installs and purges packages system-wide: run as root (make package-test)")


def run(cmd, ok=True, timeout=600, **kw):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C.UTF-8")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, **kw)
    if ok:
        assert r.returncode == 0, "%s: %d\n%s%s" % (" ".join(cmd), r.returncode, r.stdout,
                                                   r.stderr)
    return r


def installed(pkg):
    r = run(["dpkg-query", "-W", "-f", "${Status}", pkg], ok=False)
    return r.returncode == 0 and "install ok installed" in r.stdout


def package_set():
    r = run(["dpkg-query", "-W", "-f", "${Package}:${Architecture} ${Version} ${Status}\n"])
    return set(r.stdout.splitlines())


def tree(top):
    """Every path under top with its kind and, for a link, its target."""
    out = set()
    for d, dirs, files in os.walk(top):
        for name in dirs + files:
            p = os.path.join(d, name)
            out.add(p + (" -> " + os.readlink(p) if os.path.islink(p) else ""))
    return out


def deb_paths(deb):
    """The paths a .deb holds (dpkg-deb -c), absolute, each with True
    when the package ships it as a directory."""
    paths = []
    for line in run(["dpkg-deb", "-c", deb]).stdout.splitlines():
        name = line.split(None, 5)[5].split(" -> ")[0]
        name = "/" + name.lstrip("./")
        if name != "/":
            paths.append((name.rstrip("/"), line.startswith("d")))
    return paths


def services_running():
    """Processes of the system services the packages could start: the
    system apache2 (its pid file) and a dbmail_tap on the system config."""
    found = []
    if os.path.exists("/run/apache2/apache2.pid"):
        found.append("/run/apache2/apache2.pid")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"/usr/sbin/dbmail_tap"):
            found.append("pid %s: %s" % (pid, b" ".join(argv).decode(errors="replace")))
    return found


class Machine:
    """What the machine looked like before, and what the packages put."""

    def __init__(self):
        self.debs = sorted(glob.glob(os.path.join(DEB_DIR, "*.deb")))
        self.packages = package_set()
        self.state = {d: tree(d) for d in STATE_DIRS}
        self.services = services_running()
        self.deb_paths = {deb: deb_paths(deb) for deb in self.debs}
        all_paths = [p for ps in self.deb_paths.values() for p, _ in ps]
        self.files = {p for ps in self.deb_paths.values() for p, is_dir in ps if not is_dir}
        self.existed = {p for p in all_paths + ["/etc/mailguard", "/var/lib/dbmail_tap"]
                        if os.path.lexists(p)}
        self.listed = {}            # package -> dpkg -L after install
        self.own_policy = False


def purge_quietly():
    pkgs = [p for p in PACKAGES if installed(p) or
            run(["dpkg-query", "-W", p], ok=False).returncode == 0]
    if pkgs:
        run(APT + ["purge"] + pkgs, ok=False)


@pytest.fixture(scope="module")
def machine():
    m = Machine()
    names = sorted(os.path.basename(d).split("_")[0] for d in m.debs)
    if names != sorted(PACKAGES):
        pytest.fail("build/deb/ holds %s, not the two packages: run make deb" % names)
    for p in PACKAGES:
        if installed(p):
            pytest.fail("%s is installed already: this test would purge it; "
                        "remove it first (apt-get purge %s)" % (p, p))
    # A file the packages ship that exists already belongs to someone else
    # (most likely a `make install`): dpkg would ask about it.
    clash = sorted(m.existed & m.files)
    if clash:
        pytest.fail("files the packages ship exist already (make uninstall?): %s" % clash)
    if not os.path.exists(POLICY_RC_D):
        with open(POLICY_RC_D, "w") as f:
            f.write("#!/bin/sh\n# package test: no service starts\nexit 101\n")
        os.chmod(POLICY_RC_D, 0o755)
        m.own_policy = True
    else:
        # Someone's policy-rc.d: it must refuse starts, or the test would
        # start the system's apache2.
        r = run([POLICY_RC_D, "apache2", "start"], ok=False)
        if r.returncode != 101:
            pytest.fail("%s allows starting apache2 (exit %d): the test would start "
                        "the system's services" % (POLICY_RC_D, r.returncode))
    try:
        yield m
    finally:
        purge_quietly()
        if m.own_policy:
            os.unlink(POLICY_RC_D)


def test_both_packages_install_with_apt(machine):
    rels = ["./" + os.path.relpath(d, ROOT) for d in machine.debs]
    r = run(APT + ["install"] + rels, cwd=ROOT)
    for p in PACKAGES:
        assert installed(p), r.stdout
        machine.listed[p] = run(["dpkg", "-L", p]).stdout.split("\n")
        machine.listed[p] = [x for x in machine.listed[p] if x and x != "/."]
    # Installing pulled in nothing else (every dependency was there).
    added = {l.split(":")[0] for l in package_set() - machine.packages}
    assert added == set(PACKAGES), added


def test_every_file_is_where_debian_expects_it(machine):
    mod = machine.listed["libapache2-mod-mailguard"]
    tap = machine.listed["dbmail-tap"]
    for path in ("/usr/lib/apache2/modules/mod_mailguard.so",
                 "/etc/apache2/mods-available/mailguard.load",
                 "/etc/apache2/mods-available/mailguard.conf",
                 "/usr/share/mod_mailguard/webmail/roundcube/mailguard/mailguard.php",
                 "/usr/share/mod_mailguard/webmail/squirrelmail/mailguard/setup.php",
                 "/var/lib/roundcube/plugins/mailguard",
                 "/usr/share/man/man5/mailguard.conf.5.gz"):
        assert path in mod and os.path.lexists(path), path
    for path in ("/usr/sbin/dbmail_tap", "/lib/systemd/system/dbmail-tap.service",
                 "/usr/share/dbmail-tap/firewall.conf", "/etc/mailguard/dbmail_tap.conf",
                 "/usr/share/man/man8/dbmail_tap.8.gz"):
        assert path in tap and os.path.lexists(path), path
    # Debian's Roundcube loads plugins from /var/lib/roundcube/plugins.
    plugin = "/var/lib/roundcube/plugins/mailguard"
    assert os.path.islink(plugin)
    assert os.path.isfile(os.path.join(plugin, "mailguard.php"))
    with open("/etc/apache2/mods-available/mailguard.load") as f:
        assert "LoadModule mailguard_module /usr/lib/apache2/modules/mod_mailguard.so" in f.read()
    # Conffiles, so that an upgrade keeps the admin's edits; the tap's
    # configuration may hold a Redis password.
    conffiles = run(["dpkg-query", "-W", "-f", "${Conffiles}", "dbmail-tap"]).stdout
    assert "/etc/mailguard/dbmail_tap.conf" in conffiles
    conffiles = run(["dpkg-query", "-W", "-f", "${Conffiles}",
                     "libapache2-mod-mailguard"]).stdout
    assert "/etc/apache2/mods-available/mailguard.load" in conffiles
    assert "/etc/apache2/mods-available/mailguard.conf" in conffiles
    assert os.stat("/etc/mailguard/dbmail_tap.conf").st_mode & 0o777 == 0o640


def test_a2enmod_loads_the_module_into_apache(machine):
    r = run(["a2enmod", "mailguard"])
    # The package enabled it already, as Debian's module packages do.
    assert "mailguard" in r.stdout
    assert os.path.islink("/etc/apache2/mods-enabled/mailguard.load")
    assert os.path.islink("/etc/apache2/mods-enabled/mailguard.conf")
    r = run(["apache2ctl", "-t"])
    assert "Syntax OK" in r.stderr + r.stdout
    r = run(["apache2ctl", "-M"])
    assert "mailguard_module (shared)" in r.stdout, r.stdout


def test_dbmail_tap_runs_and_its_man_pages_read(machine):
    r = run(["/usr/sbin/dbmail_tap", "--version"])
    version = run(["dpkg-query", "-W", "-f", "${Version}", "dbmail-tap"]).stdout
    assert r.stdout.strip() == "dbmail_tap " + version
    # A command that does real work without Redis: a built-in filter over
    # an empty log.
    r = run(["/usr/sbin/dbmail_tap", "test", "/dev/null", "dbmail-imap"])
    assert "0 read" in r.stdout
    for page in ("/usr/share/man/man8/dbmail_tap.8.gz", "/usr/share/man/man5/mailguard.conf.5.gz"):
        with gzip.open(page, "rt") as f:
            assert ".TH " in f.read()
        r = run(["man", "--warnings", "-l", page])
        assert r.stderr == "", r.stderr


def test_the_installed_unit_verifies_and_holds_cap_net_admin_only_with_the_drop_in(machine,
                                                                                  tmp_path):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    unit = "/lib/systemd/system/dbmail-tap.service"
    with open(unit) as f:
        lines = [l.strip() for l in f]
    assert "ExecStart=/usr/sbin/dbmail_tap run -c /etc/mailguard/dbmail_tap.conf" in lines
    # verify: the syntax, the ExecStart binary, the man page it names.
    r = run([exe, "verify", unit], ok=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "dbmail-tap" not in r.stderr, r.stderr

    def net_admin(path):
        r = run([exe, "security", "--offline=true", path])
        line = [l for l in r.stdout.splitlines() if "CapabilityBoundingSet=~CAP_NET_ADMIN" in l]
        assert len(line) == 1, r.stdout
        return line[0].lstrip().startswith("\u2717")
    assert net_admin(unit) is False
    # The shipped drop-in, as the README has the admin link it.
    copy = tmp_path / "dbmail-tap.service"
    shutil.copy(unit, str(copy))
    (tmp_path / "dbmail-tap.service.d").mkdir()
    os.symlink("/usr/share/dbmail-tap/firewall.conf",
               str(tmp_path / "dbmail-tap.service.d" / "firewall.conf"))
    r = run([exe, "verify", str(copy)], ok=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert net_admin(str(copy)) is True


def test_no_service_was_started(machine):
    assert services_running() == machine.services


def test_purge_leaves_no_file_and_the_machine_as_it_was(machine):
    assert machine.listed, "the install test did not run"
    run(APT + ["purge"] + list(PACKAGES))
    for p in PACKAGES:
        r = run(["dpkg-query", "-W", "-f", "${Status}", p], ok=False)
        assert r.returncode != 0 or "not-installed" in r.stdout, r.stdout
    left = []
    for p, paths in machine.listed.items():
        for path in paths:
            if path in machine.existed:
                continue                    # a directory others share
            if os.path.lexists(path):
                left.append(path)
    assert left == [], "left after purge: %s" % left
    # Conffiles, the a2enmod links and their state, the unit's state.
    for path in ("/etc/mailguard", "/var/lib/dbmail_tap"):
        assert path in machine.existed or not os.path.lexists(path), path
    # Purging runs `a2dismod --purge` (apache2-maintscript-helper), which
    # makes apache2's empty disabled_by_admin marker directory if it was
    # not there: apache2's own bookkeeping, no file of ours.  Put the
    # machine back as it was.
    for path in sorted(tree("/var/lib/apache2/module") - machine.state["/var/lib/apache2/module"]):
        if os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path):
            os.rmdir(path)
    for d in STATE_DIRS:
        assert tree(d) == machine.state[d], d
    assert package_set() == machine.packages
    assert services_running() == machine.services
