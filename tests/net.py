"""Network helpers the test areas share."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A local TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
