"""build/lint_layout.py (part of `make lint`) passes on the tree, and
names each kind of problem it exists for when one is put into a copy:
a loop of files calling each other, a file over 700 lines, a C file the
README's Layout section does not name."""
import os
import shutil
import subprocess

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LINT = os.path.join(ROOT, "build", "lint_layout.py")


def run(root):
    env = dict(os.environ, MG_LINT_ROOT=str(root))
    p = subprocess.run(["/usr/bin/python3", LINT], capture_output=True, text=True, env=env,
                       timeout=60)
    return p.returncode, p.stdout + p.stderr


def copy_tree(dst):
    for d in ("mod_mailguard", "dbmail_tap"):
        shutil.copytree(os.path.join(ROOT, d), os.path.join(str(dst), d))
    shutil.copy(os.path.join(ROOT, "README.md"), str(dst))


def append(path, text):
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def test_the_tree_passes():
    rc, out = run(ROOT)
    assert rc == 0, out
    assert "no call loop, sizes and README ok" in out


def test_each_problem_is_named(tmp_path):
    copy_tree(tmp_path)
    core = tmp_path / "mod_mailguard" / "core"
    # mg_store_args.c calls the connection file; make the connection file
    # call back into it
    append(str(core / "mg_store_conn.c"),
           "\nint mg_lint_probe(void);\nint mg_lint_probe(void)\n{\n"
           "    return mg_store_id_word(\"x\");\n}\n")
    append(str(core / "mg_policy.c"), "\n" * 720)
    open(str(tmp_path / "dbmail_tap" / "tap_extra.c"), "w").close()
    rc, out = run(tmp_path)
    assert rc == 1, out
    assert "call loop between files:" in out and "mg_store_args.c" in out
    assert "mg_store_conn.c" in out
    assert "mod_mailguard/core/mg_policy.c:" in out and "(more than 700)" in out
    assert "README.md Layout: dbmail_tap/tap_extra.c is not named" in out
    assert "3 problems" in out
