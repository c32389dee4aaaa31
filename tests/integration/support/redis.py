"""A real redis-server on a loopback port, and a minimal RESP client.

The server runs with no persistence in a temporary directory and is
stopped by PID.  The client speaks just enough RESP for tests (no
third-party Python packages are available on these machines).
"""
import os
import shutil
import signal
import socket
import subprocess
import time

from .ports import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisError(Exception):
    pass


class RespClient:
    def __init__(self, host, port, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read_reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read_reply() for _ in range(n)]
        raise RedisError("bad reply %r" % line)

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if not isinstance(a, bytes):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))

    def __call__(self, *args):
        self.send(*args)
        return self.read_reply()


class RedisServer:
    """One redis-server process; start/stop/restart keep the same port."""

    def __init__(self, tmpdir, host="127.0.0.1", port=None, password=None):
        self.host = host
        self.port = port or free_port(host)
        self.password = password
        self.dir = os.path.join(str(tmpdir), "redis-%d" % self.port)
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None

    @property
    def url(self):
        auth = ":%s@" % self.password if self.password else ""
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "redis://%s%s:%d" % (auth, host, self.port)

    def start(self):
        args = [REDIS_SERVER, "--bind", self.host, "--port", str(self.port),
                "--save", "", "--appendonly", "no", "--dir", self.dir,
                "--daemonize", "no", "--protected-mode", "no",
                "--logfile", os.path.join(self.dir, "redis.log")]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                c = self.client()
                c("PING")
                c.close()
                return self
            except (OSError, RedisError):
                if self.proc.poll() is not None:
                    raise RuntimeError("redis-server exited: see %s" % self.dir)
                time.sleep(0.02)
        raise RuntimeError("redis-server did not answer on port %d" % self.port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def client(self):
        c = RespClient(self.host, self.port)
        if self.password:
            c("AUTH", self.password)
        return c

    def cmd(self, *args):
        c = self.client()
        try:
            return c(*args)
        finally:
            c.close()
