"""The event subscriber: a small HTTP server that records every delivery it accepts,
and can be down for a while (answering 503, or not listening at all)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.e2e.harness import free_port


@dataclass(frozen=True)
class Received:
    webhook_id: str
    job_id: str | None
    type: str | None
    headers: dict[str, str]
    body: bytes


class Subscriber:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.received: list[Received] = []
        self.refused = 0  # deliveries answered 503 while "down"
        self.cut_off = 0  # requests whose sender died before the end of the body
        self._status = 200
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._listen()

    def _listen(self) -> None:
        subscriber = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                if len(body) < length:
                    # The sender died mid-request (serve killed while sending): no web
                    # server hands such a request on, and nobody answers it; the
                    # dispatcher delivers the event again after its restart.
                    with subscriber._lock:
                        subscriber.cut_off += 1
                    return
                status = subscriber._accept(dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def _accept(self, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            if self._status >= 300:
                self.refused += 1
                return self._status
            lowered = {k.lower(): v for k, v in headers.items()}
            try:
                event = json.loads(body)
                job_id = event.get("data", {}).get("id")
                kind = event.get("type")
            except (ValueError, AttributeError):
                job_id, kind = None, None
            self.received.append(
                Received(lowered.get("webhook-id", ""), job_id, kind, lowered, body)
            )
            return 200

    def refuse(self) -> None:
        """Down, answering 503 to every delivery."""
        with self._lock:
            self._status = 503

    def stop_listening(self) -> None:
        """Down, with nothing listening on the port (connection refused)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def come_back(self) -> None:
        if self._server is None:
            self._listen()
        with self._lock:
            self._status = 200

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def distinct_ids(self) -> set[str]:
        with self._lock:
            return {r.webhook_id for r in self.received}

    def close(self) -> None:
        self.stop_listening()
