"""Drills: the module and dbmail_tap under load and faults, with exact
counts.  Run by `make drills` (full length) and, in a short form
(MG_DRILL_SHORT=1), by CI.  They reuse the integration suite's servers
(real apache2, redis-server and dbmail_tap on loopback ports they pick,
stopped by PID) through its support/ package.
"""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from support.redis import RedisServer  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("MG_BUILD", os.path.join(ROOT, "build"))
SHORT = os.environ.get("MG_DRILL_SHORT") == "1"


def scaled(full, short):
    """A drill's length: the full figure, or the short one in CI."""
    return short if SHORT else full


@pytest.fixture
def build_dir():
    return BUILD


@pytest.fixture
def redis_server(tmp_path):
    srv = RedisServer(tmp_path).start()
    yield srv
    srv.stop()


@pytest.fixture
def redis_factory(tmp_path):
    servers = []

    def make(**kw):
        srv = RedisServer(tmp_path, **kw).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()
