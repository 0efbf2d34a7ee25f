"""Checks before serving the dashboard (``lrwatch dashboard``, ``lrwatch demo``): one clear
line instead of the web server's own multi-line complaint after start-up."""

from __future__ import annotations

import socket

from lrwatch.errors import InputError


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`InputError` when ``host:port`` cannot be bound (in use, or a bad address)."""
    if not 0 < port < 65536:
        raise InputError(f"--port must be between 1 and 65535, not {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # The server (werkzeug) sets SO_REUSEADDR too, so a port in TIME_WAIT is not "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise InputError(
                f"cannot serve on {host}:{port} ({exc.strerror or exc}); "
                "is another dashboard running? pass --port to pick another"
            ) from None
