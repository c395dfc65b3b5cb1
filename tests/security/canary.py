"""Listeners that must never be reached, and helpers to run the service against them.

A :class:`Canary` listens on 127.0.0.2 (a stand-in for a private address) and on
127.0.0.1 (another port) and records every request it receives. It answers with a
valid PNG, so a fetch that reached it would look like success: a test sees a leak
twice, as a recorded hit and as a job that succeeded on the canary's image.

A :class:`Redirector` stands in for a public, allowed origin whose answer is a
redirect to the canary.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.harness import Proc, free_port
from tests.factories import make_png

TOKEN = "security-token"
SECRET = "security-secret-key-0123456789"
MARKER = "canary-secret-7f3a"
PNG = make_png(24, 18)


@dataclass
class Canary:
    private_port: int
    loopback_port: int
    hits: list[str] = field(default_factory=list)
    _servers: list[ThreadingHTTPServer] = field(default_factory=list)

    @property
    def private(self) -> str:
        """Base URL on 127.0.0.2, the stand-in private address."""
        return f"http://127.0.0.2:{self.private_port}"

    @property
    def loopback_port_text(self) -> str:
        return str(self.loopback_port)

    def start(self) -> None:
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                hits.append(f"{self.command} {self.client_address[0]} {self.path}")
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("X-Canary", MARKER)
                self.send_header("Content-Length", str(len(PNG)))
                self.end_headers()
                self.wfile.write(PNG)

            do_GET = do_POST = do_PUT = do_HEAD = _record

            def log_message(self, format: str, *args: Any) -> None:
                pass

        for host, port in (("127.0.0.2", self.private_port), ("127.0.0.1", self.loopback_port)):
            server = ThreadingHTTPServer((host, port), Handler)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()


@dataclass
class Redirector:
    port: int
    target: str
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/photo.png"

    def start(self) -> None:
        target = self.target

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@contextmanager
def canary_and_redirector() -> Iterator[tuple[Canary, Redirector]]:
    canary = Canary(free_port(), free_port())
    canary.start()
    redirector = Redirector(free_port(), f"{canary.private}/redirected.png")
    redirector.start()
    try:
        yield canary, redirector
    finally:
        redirector.stop()
        canary.stop()


def clean_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPSCALE_")}
    env.update(values)
    return env


@contextmanager
def running(
    tmp: Path, command: list[str], env: dict[str, str], *, port: int, health: str
) -> Iterator[Proc]:
    proc = Proc(
        [sys.executable, "-m", "orchestrator.cli", *command, "--port", str(port)],
        env,
        tmp / f"{command[0]}-{port}.log",
        f"http://127.0.0.1:{port}{health}",
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def wait_settled(client: httpx.Client, job_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in {"succeeded", "failed", "cancelled", "uncertain"}:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not settled in {timeout_s}s: {job.get('state')}")
