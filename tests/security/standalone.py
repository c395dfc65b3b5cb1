"""The service as a real process on 127.0.0.1 with its built-in sandbox (no second process)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.harness import SECRET, TOKEN, Proc, Service, _upscale_cmd, free_port


@contextmanager
def standalone_service(tmp: Path, **env: str) -> Iterator[Service]:
    port = free_port()
    data_dir = Path(env.get("UPSCALE_DATA_DIR") or tmp / "data")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("UPSCALE_")}
    full_env.update(
        {
            "UPSCALE_DATA_DIR": str(data_dir),
            "UPSCALE_API_TOKENS": TOKEN,
            "UPSCALE_SECRET_KEYS": SECRET,
            "UPSCALE_LOG_LEVEL": "INFO",
            **env,
        }
    )
    proc = Proc(
        [*_upscale_cmd(), "serve", "--port", str(port)],
        full_env,
        tmp / f"service-{port}.log",
        f"http://127.0.0.1:{port}/healthz",
    )
    proc.start(timeout_s=60.0)
    service = Service(port, data_dir, proc)
    try:
        yield service
    finally:
        service.close()


def raw_connection(service: Service, timeout_s: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", service.port), timeout=timeout_s)


def read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took.

    Raises TimeoutError if the connection is still open after ``limit_s``."""
    started = time.monotonic()
    sock.settimeout(limit_s)
    received = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return received, time.monotonic() - started
        received += chunk
        if time.monotonic() - started > limit_s:
            raise TimeoutError(f"still open after {limit_s}s; got {received[:200]!r}")
