"""A Redis primary, a replica and three redis-sentinel processes on loopback
ports, from generated configurations in a temporary directory, stopped by
PID: the usual high-availability setup, small.
"""
import os
import shutil
import signal
import subprocess
import time

from .ports import free_port
from .redis import REDIS_SERVER, RedisError, RespClient

REDIS_SENTINEL = shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel"
MASTER = "mgprimary"


def wait_until(fn, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except (OSError, RedisError):
            pass
        time.sleep(0.05)
    raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))


class Node:
    def __init__(self, root, name, args):
        self.port = free_port()
        self.dir = os.path.join(root, "%s-%d" % (name, self.port))
        os.makedirs(self.dir)
        self.args = args
        self.proc = None

    def cmd(self, *args):
        c = RespClient("127.0.0.1", self.port, timeout=3)
        try:
            return c(*args)
        finally:
            c.close()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None


class SentinelSetup:
    def __init__(self, root):
        self.root = str(root)
        self.data = []
        self.sentinels = []

    def _redis(self, extra=()):
        n = Node(self.root, "redis", None)
        n.proc = subprocess.Popen(
            [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(n.port), "--save", "",
             "--appendonly", "no", "--dir", n.dir, "--protected-mode", "no",
             "--logfile", os.path.join(n.dir, "redis.log")] + list(extra),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: n.cmd("PING") == "PONG", 10, "redis on %d" % n.port)
        return n

    def start(self):
        primary = self._redis()
        replica = self._redis(["--replicaof", "127.0.0.1", str(primary.port)])
        self.data = [primary, replica]
        wait_until(lambda: "master_link_status:up" in replica.cmd("INFO", "replication"), 10,
                   "the replica's link")
        for _ in range(3):
            s = Node(self.root, "sentinel", None)
            conf = os.path.join(s.dir, "sentinel.conf")
            with open(conf, "w") as f:
                f.write("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\n"
                        "logfile %s\n"
                        "sentinel monitor %s 127.0.0.1 %d 2\n"
                        "sentinel down-after-milliseconds %s 1000\n"
                        "sentinel failover-timeout %s 5000\n"
                        "sentinel parallel-syncs %s 1\n"
                        % (s.port, s.dir, os.path.join(s.dir, "sentinel.log"), MASTER,
                           primary.port, MASTER, MASTER, MASTER))
            s.proc = subprocess.Popen([REDIS_SENTINEL, conf], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            self.sentinels.append(s)
        for s in self.sentinels:
            wait_until(lambda s=s: s.cmd("SENTINEL", "get-master-addr-by-name", MASTER), 10,
                       "sentinel %d" % s.port)
        # every sentinel knows the replica and the others before a failover
        wait_until(lambda: all(int(s.cmd("SENTINEL", "master", MASTER)[
            s.cmd("SENTINEL", "master", MASTER).index("num-other-sentinels") + 1]) == 2
            and len(s.cmd("SENTINEL", "replicas", MASTER)) == 1 for s in self.sentinels),
            20, "the sentinels to know each other and the replica")
        return self

    @property
    def url(self):
        return "redis-sentinel://%s/%s" % (
            ",".join("127.0.0.1:%d" % s.port for s in self.sentinels), MASTER)

    def primary_port(self):
        return int(self.sentinels[0].cmd("SENTINEL", "get-master-addr-by-name", MASTER)[1])

    def primary(self):
        port = self.primary_port()
        return next(n for n in self.data if n.port == port)

    def failover(self):
        """SENTINEL FAILOVER; returns the new primary once every sentinel
        names it and it says it is the master."""
        old = self.primary_port()
        self.sentinels[0].cmd("SENTINEL", "FAILOVER", MASTER)
        wait_until(lambda: all(int(s.cmd("SENTINEL", "get-master-addr-by-name", MASTER)[1])
                               != old for s in self.sentinels), 20, "the failover")
        new = self.primary()
        wait_until(lambda: new.cmd("ROLE")[0] == "master", 10, "the new primary's role")
        return new

    def stop(self):
        for n in self.sentinels + self.data:
            n.stop()
