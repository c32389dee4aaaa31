"""The configuration reference cannot drift: README's tables and the man
pages are generated from build/docs/*.ini, and every directive and key the
code accepts is documented there (and nothing else is)."""
import importlib.util
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture(scope="module")
def gendocs():
    spec = importlib.util.spec_from_file_location(
        "gendocs", os.path.join(ROOT, "build", "docs", "gendocs.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def test_readme_tables_are_the_generated_ones(gendocs):
    text = readme()
    assert gendocs.readme_render(text) == text, \
        "README.md's configuration tables differ from build/docs/*.ini: run make docs"


def test_every_directive_and_key_of_the_code_is_documented_and_nothing_else(gendocs):
    problems = gendocs.differences()
    assert problems == [], "\n".join(problems)


def test_the_code_is_read_from_the_sources(gendocs):
    directives = gendocs.code_directives()
    assert "MailGuardEngine" in directives and "MailGuardSyncInterval" in directives
    assert len(directives) == len(set(directives))
    keys = gendocs.code_tap_keys()
    assert keys["redis"] == "DEFAULT" and keys["banaction"] == "DEFAULT"
    assert keys["maxretry"] == "jail" and keys["bantime.increment"] == "jail"
    # Fail2Ban keys the tap refuses are not keys of its own.
    assert "action" not in keys and "backend" not in keys


def copy_sources(dst):
    for rel in ("mod_mailguard/mg_config.c", "dbmail_tap/tap_config.c"):
        os.makedirs(os.path.join(dst, os.path.dirname(rel)), exist_ok=True)
        shutil.copy(os.path.join(ROOT, rel), os.path.join(dst, rel))


def edit(path, old, new):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert old in text, old
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(old, new, 1))


def test_an_undocumented_directive_or_key_is_named(gendocs, tmp_path):
    copy_sources(str(tmp_path))
    edit(str(tmp_path / "mod_mailguard" / "mg_config.c"), 'AP_INIT_FLAG("MailGuardEngine"',
         'AP_INIT_TAKE1("MailGuardNewThing", NULL, NULL, RSRC_CONF, "x"),\n'
         '    AP_INIT_FLAG("MailGuardEngine"')
    edit(str(tmp_path / "dbmail_tap" / "tap_config.c"), '"redis", "prefix",',
         '"redis", "new_global", "prefix",')
    edit(str(tmp_path / "dbmail_tap" / "tap_config.c"), '"enabled", "filter",',
         '"enabled", "new_jail_key", "filter",')
    problems = gendocs.differences(str(tmp_path))
    assert any("MailGuardNewThing" in p and "not in build/docs/mod_mailguard.ini" in p
               for p in problems), problems
    assert any("new_global" in p and "not in build/docs/dbmail_tap.ini" in p
               for p in problems), problems
    assert any("new_jail_key" in p for p in problems), problems
    assert len(problems) == 3, problems


def test_a_documented_directive_or_key_the_code_lost_is_named(gendocs, tmp_path):
    copy_sources(str(tmp_path))
    edit(str(tmp_path / "mod_mailguard" / "mg_config.c"),
         'AP_INIT_TAKE1("MailGuardJail"', 'AP_INIT_TAKE1("MailGuardJailX"')
    # A global key moved to the jail list is a difference too.
    edit(str(tmp_path / "dbmail_tap" / "tap_config.c"), '"port", "prefixfloor",',
         '"prefixfloor",')
    edit(str(tmp_path / "dbmail_tap" / "tap_config.c"), '"ipv6prefix",\n    NULL,',
         '"ipv6prefix", "port",\n    NULL,')
    problems = gendocs.differences(str(tmp_path))
    assert any(p.startswith("directive MailGuardJail is in build/docs") for p in problems), problems
    assert any(p.startswith("directive MailGuardJailX is in mod_mailguard") for p in problems), problems
    assert any("key port" in p and "where = DEFAULT" in p for p in problems), problems
    assert len(problems) == 3, problems


def test_a_table_edited_by_hand_in_the_readme_is_caught(gendocs):
    text = readme()
    edited = text.replace("| `MailGuardMaxRetry N` | vhost, directory | `10` |",
                          "| `MailGuardMaxRetry N` | vhost, directory | `12` |", 1)
    assert edited != text
    assert gendocs.readme_render(edited) == text
    gone = re.sub(r"<!-- end of generated table -->\n", "", text, count=1)
    with pytest.raises(gendocs.DocError, match="markers"):
        gendocs.readme_render(gone)


def test_the_readme_check_command_says_which_table_differs(tmp_path):
    # The command itself, as `make docs` and a developer run it.
    r = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "build", "docs", "gendocs.py"),
                        "readme", "--check"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "build", "docs", "gendocs.py"),
                        "check"], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stderr) == (0, "")


def test_the_man_pages_carry_every_entry_and_render_without_warnings(gendocs, tmp_path):
    out = str(tmp_path)
    r = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "build", "docs", "gendocs.py"),
                        "man", out], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for program, page in (("mod_mailguard", "mailguard.conf.5"), ("dbmail_tap", "dbmail_tap.8")):
        path = os.path.join(out, page)
        with open(path, encoding="utf-8") as f:
            roff = f.read()
        assert "@" + "DIRECTIVES@" not in roff and "@KEYS@" not in roff and "@VERSION@" not in roff
        # groff's own warnings (-ww), as lintian runs them.
        r = subprocess.run(["groff", "-man", "-ww", "-z", "-k", path],
                           capture_output=True, text=True, timeout=60)
        assert (r.returncode, r.stderr) == (0, ""), r.stderr
        env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
        r = subprocess.run(["man", "-l", path], capture_output=True, text=True, timeout=60,
                           env=env)
        assert r.returncode == 0, r.stderr
        text = r.stdout
        for e in gendocs.load(program):
            assert e["name"] in text, (page, e["name"])
        if program == "dbmail_tap":
            assert "statefile" in text and "/var/lib/dbmail_tap/state" in text
            assert "mod_mailguard " + gendocs.version() in text
        else:
            assert "MailGuardIgnoreIP" in text and "Context: server config." in text
