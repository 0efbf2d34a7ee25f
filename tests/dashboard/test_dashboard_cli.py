"""`lrwatch dashboard` as a person runs it: a real process serving on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import stop_process
from tests.net import free_port


def test_dashboard_command_serves_the_store_it_names(tracking_uri, tmp_path):
    port = free_port()
    env = dict(os.environ, LRWATCH_CACHE_DIR=str(tmp_path / "cache"))
    command = [sys.executable, "-m", "lrwatch.cli", "dashboard", "--tracking-uri", tracking_uri,
               "--port", str(port), "--no-browser"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        body = _get_when_up(f"http://127.0.0.1:{port}/", timeout_s=60)
        assert "<title>lrwatch</title>" in body
        # Bound to loopback only: what the kernel says, not what the command printed.
        assert _listening_addresses(port) == {"127.0.0.1"}
    finally:
        _, stderr = stop_process(process)
    assert f"lrwatch: tracking store {tracking_uri}" in stderr
    assert f"http://127.0.0.1:{port}/" in stderr


def test_bad_port_is_one_line_and_exit_2():
    result = subprocess.run([sys.executable, "-m", "lrwatch.cli", "dashboard", "--port", "70000"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == "lrwatch: error: --port must be between 1 and 65535, not 70000"


def test_a_port_in_use_is_one_line_and_exit_2():
    # Before, the web server printed its own two lines after start-up and the command exited 1.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "lrwatch.cli", "dashboard", "--port", str(port)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"lrwatch: error: cannot serve on 127.0.0.1:{port} (Address already in use); "
        "is another dashboard running? pass --port to pick another"
    )


def test_a_tracking_uri_no_store_has_is_one_line_and_exit_2():
    """Before: the dashboard started and every page showed MLflow's "Model registry
    functionality is unavailable". A store that is down may still come up; this never can."""
    command = [sys.executable, "-m", "lrwatch.cli", "dashboard", "--tracking-uri", "postgres://u@db/mlflow",
               "--port", str(free_port()), "--no-browser"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "lrwatch: error: tracking URI postgres://u@db/mlflow: MLflow has no tracking store for "
        "'postgres://' (did you mean postgresql://...?)"
    )


def _get_when_up(url: str, *, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"the dashboard never answered at {url}")
            time.sleep(0.3)


def _listening_addresses(port: int) -> set[str]:
    """IPv4/IPv6 addresses with a socket listening on ``port``, from /proc/net/tcp{,6}."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with open(table) as handle:
            for line in list(handle)[1:]:
                local, state = line.split()[1], line.split()[3]
                address, local_port = local.split(":")
                if state == "0A" and int(local_port, 16) == port:  # 0A: LISTEN
                    raw = bytes.fromhex(address)
                    if width == 8:
                        found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                    else:  # four little-endian 32-bit words
                        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                        found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found
