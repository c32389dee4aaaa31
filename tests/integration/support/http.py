"""A minimal keep-alive HTTP/1.1 client on one loopback connection: for
timing many small requests without a process per request (curl) in the
way.  Used by the benchmarks and the drills."""
import socket


class HttpConn:
    """A minimal keep-alive HTTP/1.1 client on one loopback connection."""

    def __init__(self, port, timeout=5.0):
        self.port = port
        self.timeout = timeout
        self.sock = None
        self.buf = b""

    def _connect(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port),
                                             timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock = None

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def request(self, path, method="GET", headers=(), body=b"", close=False):
        """Returns (status, headers dict (lower-case names), body bytes)."""
        if self.sock is None:
            self._connect()
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: bench.invalid"]
        lines.extend(headers)
        if body or method == "POST":
            lines.append("Content-Type: application/x-www-form-urlencoded")
            lines.append("Content-Length: %d" % len(body))
        if close:
            lines.append("Connection: close")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        hl = head.decode("latin-1").split("\r\n")
        status = int(hl[0].split()[1])
        hdrs = {}
        for x in hl[1:]:
            k, _, v = x.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        if "content-length" in hdrs:
            n = int(hdrs["content-length"])
            while len(self.buf) < n:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n:]
        elif hdrs.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                size, self.buf = self.buf.split(b"\r\n", 1)
                n = int(size.split(b";")[0], 16)
                while len(self.buf) < n + 2:
                    self._fill()
                data += self.buf[:n]
                self.buf = self.buf[n + 2:]
                if n == 0:
                    break
        else:
            data = b""
        if close or hdrs.get("connection", "").lower() == "close":
            self.close()
        return status, hdrs, data
