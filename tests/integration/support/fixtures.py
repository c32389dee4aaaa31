"""Fixtures both suites (integration and drills) share: where the build
is, and real redis-server processes on loopback ports, each killed after
its test."""
import os

import pytest

from support.redis import RedisServer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BUILD = os.environ.get("MG_BUILD", os.path.join(ROOT, "build"))


@pytest.fixture
def build_dir():
    return BUILD


@pytest.fixture
def redis_server(tmp_path):
    """A fresh redis-server for one test; killed afterwards."""
    srv = RedisServer(tmp_path).start()
    yield srv
    srv.stop()


@pytest.fixture
def redis_factory(tmp_path):
    """Start extra servers (other ports, passwords); all killed afterwards."""
    servers = []

    def make(**kw):
        srv = RedisServer(tmp_path, **kw).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()
