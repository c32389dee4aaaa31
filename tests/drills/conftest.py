"""Drills: the module and dbmail_tap under load and faults, with exact
counts.  Run by `make drills` (full length) and, in a short form
(MG_DRILL_SHORT=1), by CI.  They reuse the integration suite's servers
(real apache2, redis-server and dbmail_tap on loopback ports they pick,
stopped by PID) through its support/ package.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from support.fixtures import BUILD, ROOT, build_dir, redis_factory, redis_server  # noqa: E402,F401

SHORT = os.environ.get("MG_DRILL_SHORT") == "1"


def scaled(full, short):
    """A drill's length: the full figure, or the short one in CI."""
    return short if SHORT else full
