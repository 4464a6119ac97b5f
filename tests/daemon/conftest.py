"""Fixtures of the daemon tests: a real datagram socket standing in for systemd's notify socket."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


class NotifySocket:
    """The receiving end of $NOTIFY_SOCKET; `messages()` returns what has arrived, without waiting."""

    def __init__(self, address: str, sock: socket.socket):
        self.address = address  # as systemd spells it in $NOTIFY_SOCKET
        self.sock = sock

    def messages(self) -> list[dict[str, str]]:
        out = []
        while True:
            try:
                data = self.sock.recv(4096, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return out
            out.append(dict(line.split("=", 1) for line in data.decode().split("\n")))

    def next(self, timeout_s: float = 5.0) -> dict[str, str]:
        self.sock.settimeout(timeout_s)
        data = self.sock.recv(4096)
        return dict(line.split("=", 1) for line in data.decode().split("\n"))


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    # Short directory: sun_path holds 108 bytes and pytest's tmp_path can be longer.
    d = Path(tempfile.mkdtemp(prefix="vd-n-"))
    path = d / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        yield NotifySocket(str(path), sock)
    finally:
        sock.close()
        path.unlink(missing_ok=True)
        os.rmdir(d)


@pytest.fixture
def abstract_notify_socket() -> Iterator[NotifySocket]:
    name = f"voice-device-test-{os.getpid()}-{os.urandom(4).hex()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        yield NotifySocket("@" + name, sock)
    finally:
        sock.close()
