"""Shared fixtures: real redis-server processes on loopback ports
(support/fixtures.py, which the drills use too).

Feature-specific fixtures (httpd, dbmail_tap) live in support/ modules and
are imported by the test files that use them.
"""
from support.fixtures import BUILD, ROOT, build_dir, redis_factory, redis_server  # noqa: F401
