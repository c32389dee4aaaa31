"""The stack a real-webmail test file shares between its tests: one
Dovecot, one Redis and the Apache servers in front of the webmail, all
stopped (and, unless MG_KEEP is set or something went wrong, removed) at
the end of the file."""
import os
import shutil
import tempfile

import pytest

from support.dovecot import Dovecot
from support.redis import RedisServer


class WebmailStack:
    """Subclasses say how one server of theirs is made (server())."""

    def __init__(self, prefix):
        self.dovecot = Dovecot().start()
        self.redis_dir = tempfile.mkdtemp(prefix=prefix)
        self.redis = RedisServer(self.redis_dir).start()
        self.sites = []
        self.servers = []
        # what else close() stops and removes (php-fpm)
        self.extras = []

    def started(self, srv, site):
        """srv, started, remembered for close() with the site it serves."""
        self.sites.append(site)
        self.servers.append(srv)
        srv.start()
        srv.site = site
        return srv

    def close(self):
        """Stop everything; the error-log lines no test allowed."""
        bad = []
        for srv in self.servers:
            srv.stop(check=False)
            bad += srv.unexpected_errors()
        for x in self.extras:
            x.stop()
        self.dovecot.stop()
        self.redis.stop()
        if not bad and not os.environ.get("MG_KEEP"):
            for x in self.servers + self.sites + [self.dovecot] + self.extras:
                x.cleanup()
            shutil.rmtree(self.redis_dir, ignore_errors=True)
        return bad


def stack_fixture(make, servers):
    """The module fixture's body: make() the stack, start servers (a list
    of (attribute, name, plugin)), yield it, fail on stray log lines."""
    st = make()
    try:
        for attr, name, plugin in servers:
            setattr(st, attr, st.server(name, plugin=plugin))
        yield st
    finally:
        bad = st.close()
        if bad:
            pytest.fail("unexpected error-log lines:\n" + "\n".join(bad[:20]), pytrace=False)


def _revive(stack):
    if stack.dovecot.proc is None:
        stack.dovecot.start()
    stack.dovecot.reset_penalty()


def dovecot_running(stack):
    """Dovecot runs and its per-address penalty is cleared, before and
    after the test (a test may stop it)."""
    _revive(stack)
    yield stack.dovecot
    _revive(stack)
