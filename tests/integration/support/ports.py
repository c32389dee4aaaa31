"""Loopback port picking for test servers."""
import socket


def free_port(host="127.0.0.1"):
    """A TCP port that is free on host right now (the kernel picks it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
