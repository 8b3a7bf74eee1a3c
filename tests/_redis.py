"""A real redis-server for one test (the Debian package ``redis-server``; ``.ci/run`` installs it).

``redis_server`` starts ``redis-server`` on a free loopback port with no persistence and yields
its URL; the server is stopped after the test. Without the binary the test is skipped with the
package to install, except in CI (``CI`` set), where that is a failure.
"""

from __future__ import annotations

import gc
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

MISSING = "redis-server not found: install the Debian package redis-server (.ci/run does)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_server() -> Iterator[str]:
    """Yield ``redis://127.0.0.1:<port>/0`` of a fresh redis-server."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {proc.stderr.read()!r}")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        # A client the test (or the example under test) left open is found now and reported on
        # this test, not whenever the garbage collector next runs in some later test.
        gc.collect()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
