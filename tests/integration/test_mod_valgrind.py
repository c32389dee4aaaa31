"""httpd runs leak-free and error-free under valgrind in one process.

`apache2 -X` (one process, event MPM) with the module, a real Redis, and the
module's paths exercised: a failed login, the ban it makes, a denial, a
ban and an unban from elsewhere, Redis lost (local window and a local ban)
and back (the queued ban written).  Then a clean stop: valgrind must report
no error and no leak with a module frame in it.
"""
import os
import re
import shutil
import signal
import subprocess

import pytest

from support.httpd import APACHE2, httpd_factory, need_module  # noqa: F401
from support.mailguard import GUARDED_VHOST, PROXY, ban_from_elsewhere, bans, now, wait_for

pytestmark = pytest.mark.usefixtures("need_module")

VALGRIND = shutil.which("valgrind")
# A record that names one of the module's own frames or files.
OURS = re.compile(r"mod_mailguard|\bmg_[a-z_]+\b|mg_[a-z_]+\.c")


def _records(log):
    """valgrind's report split into its records (blank-line separated)."""
    body = re.sub(r"^==\d+== ?", "", log, flags=re.M)
    return [r for r in body.split("\n\n") if r.strip()]


@pytest.mark.skipif(VALGRIND is None, reason="valgrind is not installed")
@pytest.mark.skipif(bool(os.environ.get("MG_SANITIZER_PRELOAD")),
                    reason="a sanitizer build cannot run under valgrind")
def test_httpd_under_valgrind_has_no_module_errors_or_leaks(redis_server, httpd_factory,
                                                             tmp_path):
    srv = httpd_factory(start=False, redis=redis_server.url, vhost_conf=GUARDED_VHOST,
                        name="valgrind", sync_interval="1s",
                        allow=(r"(?i)redis",))
    # One file per process (%p): a process that execs would otherwise
    # truncate the report of the one before.
    vdir = tmp_path / "valgrind"
    vdir.mkdir()
    os.chmod(str(vdir), 0o777)
    env = dict(os.environ, PHP_INI_SCAN_DIR="")
    srv.proc = subprocess.Popen(
        [VALGRIND, "--leak-check=full", "--show-leak-kinds=definite",
         "--errors-for-leak-kinds=definite", "--num-callers=30",
         "--log-file=%s/vg.%%p.log" % vdir, APACHE2, "-X", "-f", srv.conf],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env=env)
    try:
        assert wait_for(lambda: _answers(srv), within=60, step=0.5) is not None, \
            "apache2 -X under valgrind never answered"
        # A failed login that bans, then a denial.
        me = "203.0.113.80"
        for _ in range(2):
            assert srv.basic_login_fail(src=PROXY, xff=me).status == 401
        assert wait_for(lambda: me in bans(redis_server), within=10, step=0.2)
        assert srv.get("/static.txt", src=PROXY, xff=me).status == 403
        # A ban and an unban from elsewhere, through the sync job.
        other = "2001:db8:5::1"
        ban_from_elsewhere(redis_server, "2001:db8:5::/64", now() + 3600)
        assert wait_for(lambda: srv.get("/static.txt", src=PROXY, xff=other).status == 403,
                        within=15, step=0.3) is not None
        redis_server.cmd("ZREM", "mailguard:bans", "2001:db8:5::/64")
        redis_server.cmd("PUBLISH", "mailguard:events", "unban 2001:db8:5::/64")
        assert wait_for(lambda: srv.get("/static.txt", src=PROXY, xff=other).status == 200,
                        within=15, step=0.3) is not None
        # Redis lost: a local ban; Redis back: it is written there.
        redis_server.stop()
        local = "198.51.100.80"
        for _ in range(2):
            assert srv.basic_login_fail(src=PROXY, xff=local).status == 401
        assert wait_for(lambda: srv.get("/static.txt", src=PROXY, xff=local).status == 403,
                        within=10, step=0.3) is not None
        redis_server.start()
        assert wait_for(lambda: local in bans(redis_server), within=30, step=0.5) is not None
    finally:
        # SIGTERM by PID (-X has no graceful stop): valgrind writes its
        # report as the process exits; the error log is checked at teardown.
        srv.stop(check=False, sig=signal.SIGTERM)
    log = ""
    for name in sorted(os.listdir(str(vdir))):
        with open(str(vdir / name), errors="replace") as f:
            log += f.read()
    assert "ERROR SUMMARY" in log, "valgrind did not finish its report:\n" + log[-2000:]
    ours = [r for r in _records(log) if OURS.search(r)
            and ("definitely lost" in r or "Invalid" in r or "uninitialised" in r
                 or "Mismatched" in r or "overlap" in r)]
    assert not ours, "valgrind found problems in the module:\n\n" + "\n\n".join(ours[:5])


def _answers(srv):
    try:
        return srv.get("/static.txt", timeout=5).status == 200
    except RuntimeError:
        return False
