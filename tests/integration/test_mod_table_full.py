"""A ban set larger than MailGuardBanTableSize: said loudly once, counted on
the status page, and the longest bans win, so a flood of short bans can
neither push out a permanent one nor hide how many are not enforced."""
import re
import time

import pytest

from support.httpd import httpd_factory, need_module  # noqa: F401  (fixtures)
from support.mailguard import (GUARDED_VHOST, status, ban_from_elsewhere, now, script,
                               unban_from_elsewhere, wait_for)

pytestmark = pytest.mark.usefixtures("need_module")

STATUS = """
<Location "/mailguard-status">
    SetHandler mailguard-status
</Location>
"""


def fields(srv):
    text = srv.get("/mailguard-status").body
    return dict(l.split(": ", 1) for l in text.splitlines() if ": " in l)


def test_a_flood_of_short_bans_never_pushes_out_a_permanent_one(redis_server, httpd_factory):
    srv = httpd_factory(redis=redis_server.url, vhost_conf=GUARDED_VHOST + STATUS,
                        server_conf="MailGuardBanTableSize 64\n", name="full",
                        allow=(r"MG0063: the ban table is full",))
    ban_from_elsewhere(redis_server, "192.0.2.1", float("inf"), jail="manual")
    assert wait_for(lambda: status(srv, "192.0.2.1") == 403, within=5)
    # 100 short bans in one script call, more than the table holds
    exp = int(now()) + 600
    args = []
    for i in range(100):
        args += ["198.51.100.%d" % i, str(exp + i)]
    redis_server.cmd("EVAL", script("ban"), 0, "mailguard:", "flood", *args)
    assert wait_for(lambda: fields(srv).get("NotMirrored", "0") != "0", within=5), fields(srv)
    f = fields(srv)
    assert int(f["BansMirrored"]) == 64
    assert int(f["NotMirrored"]) == 101 - 64
    assert status(srv, "192.0.2.1") == 403          # the permanent ban stayed
    kept = [i for i in range(100) if status(srv, "198.51.100.%d" % i) == 403]
    assert len(kept) == 63
    # the longest of the short ones won (expiry grows with i), give or take
    # the few the table's eviction window did not see
    assert sum(kept) > sum(range(37, 100)) * 0.8
    lines = [l for l in open(srv.errlog) if "MG0063" in l]
    assert len(lines) == 1 and "does not enforce 37 of the 101" in lines[0], lines
    # room again: the bans left out are read in, and that is said once
    for i in kept[:50]:
        unban_from_elsewhere(redis_server, "198.51.100.%d" % i)
    assert wait_for(lambda: fields(srv).get("NotMirrored") == "0", within=10), (fields(srv), open(srv.errlog).read()[-3000:])
    assert int(fields(srv)["BansMirrored"]) == 101 - 50
    assert all(status(srv, "198.51.100.%d" % i) == 403 for i in range(100) if i not in kept[:50])
    assert len([l for l in open(srv.errlog) if "MG0076" in l]) == 1
