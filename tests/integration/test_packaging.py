"""What both installs share, checked without installing anything: the
systemd unit template filled in by `make install` (into a staging
directory) and by the Debian package, its hardening as systemd reads it,
the firewall drop-in, and the packaging files' agreement with the code.
The packages themselves are installed and purged by tests/package/
(`make package-test`, as root)."""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PACKAGING = os.path.join(ROOT, "build", "packaging")
EXEC = "ExecStart=%s/dbmail_tap run -c %s/dbmail_tap.conf"


def unit_template():
    with open(os.path.join(PACKAGING, "dbmail-tap.service"), encoding="utf-8") as f:
        return f.read()


def fill(template, sbindir, confdir="/etc/mailguard"):
    return template.replace("@SBINDIR@", sbindir).replace("@CONFDIR@", confdir)


def tap_version():
    with open(os.path.join(ROOT, "dbmail_tap", "tap_cmd.h"), encoding="utf-8") as f:
        return re.search(r'#define\s+TAP_VERSION\s+"([^"]+)"', f.read()).group(1)


@pytest.fixture
def staged(build_dir, tmp_path):
    """`make install` into a staging directory (DESTDIR), man pages
    included, then `make uninstall` from it at the end."""
    b = tmp_path / "build"
    b.mkdir()
    for f in ("mod_mailguard.so", "dbmail_tap"):
        os.symlink(os.path.join(build_dir, f), str(b / f))
    r = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "build", "docs", "gendocs.py"),
                        "man", str(b / "man")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    dest = tmp_path / "dest"
    env = dict(os.environ, DESTDIR=str(dest))

    def run(action):
        r = subprocess.run(["sh", os.path.join(ROOT, "build", "install.sh"), action, str(b)],
                           capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        return r
    run("install")
    yield dest, run


def test_make_install_fills_in_the_unit_with_the_binary_it_installs(staged):
    dest, _ = staged
    unit = (dest / "etc/systemd/system/dbmail-tap.service").read_text()
    assert "@SBINDIR@" not in unit and "@CONFDIR@" not in unit
    lines = [l.strip() for l in unit.splitlines()]
    assert EXEC % ("/usr/local/sbin", "/etc/mailguard") in lines
    assert os.access(str(dest / "usr/local/sbin/dbmail_tap"), os.X_OK)
    assert (dest / "usr/local/share/dbmail-tap/firewall.conf").is_file()
    assert (dest / "usr/local/share/man/man8/dbmail_tap.8").is_file()
    assert (dest / "usr/local/share/man/man5/mailguard.conf.5").is_file()
    conf = dest / "etc/mailguard/dbmail_tap.conf"
    assert conf.is_file() and (conf.stat().st_mode & 0o777) == 0o640


def test_make_uninstall_removes_what_make_install_put_but_the_configuration(staged):
    dest, run = staged
    # An install made before the unit was renamed leaves the old name.
    (dest / "etc/systemd/system/dbmail_tap.service").write_text("[Unit]\n")
    run("uninstall")
    left = sorted(os.path.relpath(os.path.join(d, f), str(dest))
                  for d, _, files in os.walk(str(dest)) for f in files)
    assert left == ["etc/mailguard/dbmail_tap.conf"], left


def analyze(*args):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    r = subprocess.run([exe] + list(args), capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and ("Failed to" in r.stderr and "bus" in r.stderr.lower()):
        pytest.skip("systemd-analyze cannot run here: %s" % r.stderr.strip())
    return r


def net_admin(unit_path):
    """True/False: whether systemd would leave CAP_NET_ADMIN in the
    unit's bounding set (drop-ins next to the file included)."""
    r = analyze("security", "--offline=true", unit_path)
    assert r.returncode == 0, r.stderr
    line = [l for l in r.stdout.splitlines() if "CapabilityBoundingSet=~CAP_NET_ADMIN" in l]
    assert len(line) == 1, r.stdout
    return line[0].lstrip().startswith("\u2717")   # ✗: the capability is there


def test_the_unit_verifies_and_gets_cap_net_admin_only_from_the_drop_in(build_dir, tmp_path):
    # The build's binary stands in for the installed one: verify checks
    # that ExecStart names an executable.
    path = tmp_path / "dbmail-tap.service"
    path.write_text(fill(unit_template(), build_dir))
    r = analyze("verify", "--man=no", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "dbmail-tap.service" not in r.stderr, r.stderr
    assert net_admin(str(path)) is False
    dropins = tmp_path / "dbmail-tap.service.d"
    dropins.mkdir()
    shutil.copy(os.path.join(PACKAGING, "dbmail-tap-firewall.conf"), str(dropins / "firewall.conf"))
    r = analyze("verify", "--man=no", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert net_admin(str(path)) is True


def test_the_unit_is_hardened():
    lines = set(l.strip() for l in unit_template().splitlines())
    for want in ("ProtectSystem=strict", "NoNewPrivileges=yes", "StateDirectory=dbmail_tap",
                 "CapabilityBoundingSet=CAP_DAC_READ_SEARCH", "PrivateTmp=yes",
                 "ProtectHome=yes", "RestrictSUIDSGID=yes"):
        assert want in lines, want
    assert not any("CAP_NET_ADMIN" in l for l in lines if not l.startswith("#"))


def test_the_example_configuration_needs_no_capability_the_unit_lacks():
    # Shipped with banaction = none: enabling nftables is a decision the
    # admin makes together with the drop-in (the comment says how).
    with open(os.path.join(PACKAGING, "dbmail_tap.conf"), encoding="utf-8") as f:
        text = f.read()
    assert re.search(r"^banaction = none$", text, re.M)
    assert "/usr/share/dbmail-tap/firewall.conf" in text


def test_the_debian_changelog_names_the_programs_version(build_dir):
    with open(os.path.join(ROOT, "build", "debian", "changelog"), encoding="utf-8") as f:
        first = f.readline()
    m = re.match(r"^mod-mailguard \(([^)]+)\) ", first)
    assert m, first
    assert m.group(1) == tap_version()
    r = subprocess.run([os.path.join(build_dir, "dbmail_tap"), "--version"],
                       capture_output=True, text=True, timeout=10)
    assert r.stdout.strip() == "dbmail_tap " + m.group(1)


def test_the_top_level_has_no_debian_directory():
    # The packaging files live in build/debian/; make deb copies them.
    assert not os.path.exists(os.path.join(ROOT, "debian"))
    assert os.path.isfile(os.path.join(ROOT, "build", "debian", "control"))
