"""The module's directives and dbmail_tap's keys take the same values: a
jail moved between Apache and the tap means the same thing in both.  Each
value below goes through `apache2 -t` and through `dbmail_tap check`;
both must accept it, or both refuse it, as the last column says.  The
rules live once, in the core (mg_rules.h, mg_policy.c); this test fails
if either program grows a check of its own."""
import os
import subprocess

import pytest

from support.httpd import Httpd, need_module  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("need_module")

J47 = "j" * 47
P64 = "p" * 63 + ":"

# (directive, where, tap key or "[section]", {value: accepted})
RULES = [
    ("MailGuardMaxRetry", "vhost", "maxretry",
     {"1": True, "5": True, "100000": True, "100001": False, "1000000": False, "0": False,
      "-3": False, "abc": False, "5x": False, "0x10": False}),
    ("MailGuardFindTime", "vhost", "findtime",
     {"1": True, "45s": True, "1h30m": True, "0": False, "0s": False, "-5m": False,
      "10x": False, "5300w": False}),
    ("MailGuardBanTime", "vhost", "bantime",
     {"30": True, "1w": True, "2d12h": True, "0": False, "1y": False, "soon": False}),
    ("MailGuardBanTimeMax", "vhost", "bantime.maxtime",
     {"1w": True, "100": True, "0": False, "forever": False}),
    ("MailGuardBanTimeFactor", "vhost", "bantime.factor",
     {"1": True, "1.5": True, "2": True, "1000": True, "1000.5": False, "0.5": False,
      ".5": False, "0x2": False, "2e0": False, "inf": False, "nan": False, "-2": False}),
    ("MailGuardIPv6Prefix", "server", "ipv6prefix",
     {"1": True, "48": True, "128": True, "0": False, "129": False, "/64": False,
      "sixty": False}),
    ("MailGuardJail", "vhost", "[section]",
     {"imap": True, "web.mail-1_2": True, J47: True, J47 + "j": False, "a/b": False,
      "a:b": False, "caf\u00e9": False, "a$b": False}),
    ("MailGuardKeyPrefix", "server", "prefix",
     {"mg:": True, "site-1/": True, P64: True, P64 + "x": False, "caf\u00e9": False}),
    ("MailGuardPrefixFloor", "server", "prefixfloor",
     {"16 32": True, "/8 /24": True, "1 1": True, "32 128": True, "0 32": False,
      "16 129": False, "33 64": False, "16": False, "sixteen 32": False}),
]

CASES = [(d, w, k, v, ok) for d, w, k, vals in RULES for v, ok in vals.items()]

GLOBAL_KEYS = {"prefix", "prefixfloor"}


def apache_accepts(srv, directive, where, value):
    text = "%s %s" % (directive, value)
    if where == "server":
        srv.write_conf(server_conf=text, vhost_conf="    MailGuardEngine On")
    else:
        srv.write_conf(vhost_conf="    MailGuardEngine On\n    " + text)
    rc, out = srv.configtest()
    if rc != 0:
        # a refusal names the directive
        assert directive in out, out
    return rc == 0, out


def tap_accepts(build_dir, tmp_path, key, value):
    if key == "[section]":
        text = "[DEFAULT]\n[%s]\nenabled = false\n" % value
    elif key in GLOBAL_KEYS:
        text = "[DEFAULT]\n%s = %s\n[imap]\nenabled = false\n" % (key, value)
    else:
        text = "[DEFAULT]\n[imap]\nenabled = false\n%s = %s\n" % (key, value)
    path = os.path.join(str(tmp_path), "tap.conf")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    p = subprocess.run([os.path.join(build_dir, "dbmail_tap"), "check", "-c", path],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode in (0, 1), p.stderr
    if p.returncode == 1:
        # a refusal names the file and the key (or the section)
        assert path in p.stderr and (key in p.stderr or "jail name" in p.stderr), p.stderr
    else:
        assert "Syntax OK" in p.stdout
    return p.returncode == 0, p.stdout + p.stderr


@pytest.fixture(scope="module")
def srv():
    s = Httpd(name="rules")
    yield s
    s.cleanup()


@pytest.mark.parametrize("directive,where,key,value,ok", CASES,
                         ids=["%s=%s" % (k, v) for _, _, k, v, _ in CASES])
def test_module_and_tap_take_the_same_values(srv, build_dir, tmp_path, directive, where, key,
                                              value, ok):
    mod_ok, mod_out = apache_accepts(srv, directive, where, value)
    tap_ok, tap_out = tap_accepts(build_dir, tmp_path, key, value)
    assert mod_ok == ok, "apache2 -t %s %r:\n%s" % (directive, value, mod_out)
    assert tap_ok == ok, "dbmail_tap check %s = %r:\n%s" % (key, value, tap_out)


def test_the_tap_states_its_defaults_the_module_s_but_maxretry(build_dir, tmp_path):
    """The printed defaults of a bare jail: the module's policy
    (MailGuardMaxRetry 10, FindTime 10m, BanTime 1h, IPv6Prefix 64,
    PrefixFloor 16 32 in the README's table), except maxretry, which keeps
    Fail2Ban's 5."""
    path = os.path.join(str(tmp_path), "tap.conf")
    with open(path, "w") as f:
        f.write("[DEFAULT]\n[imap]\nbantime.increment = true\n")
    p = subprocess.run([os.path.join(build_dir, "dbmail_tap"), "check", "-c", path],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    assert "prefixfloor /16 /32" in p.stdout
    assert ("[imap] disabled: maxretry 5, findtime 10m, bantime 1h, increment x2 up to 1w, "
            "ipv6prefix /64, 0 log files") in p.stdout
