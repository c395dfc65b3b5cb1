"""The soak's HTTP client for the service: every answer is counted, every 5xx recorded,
and calls ride out a killed process or a held lock within a bounded time."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.e2e.harness import TOKEN


@dataclass(frozen=True)
class ServerError:
    method: str
    path: str
    status: int
    retry_after: str | None


@dataclass
class AnswerLog:
    """Every answer the soak got from the service or the sandbox, by status."""

    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[ServerError] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hook(self, response: httpx.Response) -> None:
        request = response.request
        with self.lock:
            self.statuses[response.status_code] += 1
            if response.status_code >= 500:
                self.errors.append(
                    ServerError(
                        request.method,
                        request.url.path,
                        response.status_code,
                        response.headers.get("retry-after"),
                    )
                )

    def total(self) -> int:
        with self.lock:
            return sum(self.statuses.values())

    def bad(self) -> list[ServerError]:
        """5xx answers other than a 503 that says when to come back."""
        with self.lock:
            return [e for e in self.errors if not (e.status == 503 and e.retry_after)]


def make_client(base: str, log: AnswerLog, timeout_s: float = 30.0) -> httpx.Client:
    return httpx.Client(
        base_url=base,
        timeout=timeout_s,
        trust_env=False,
        headers={"Authorization": f"Bearer {TOKEN}"},
        event_hooks={"response": [log.hook]},
    )


class GaveUp(Exception):
    """The service did not answer within the call's time bound."""


class Api:
    """Calls to one of several web processes, failing over while one is down."""

    def __init__(self, bases: Callable[[], Sequence[str]], log: AnswerLog) -> None:
        self._bases = bases
        self._log = log
        self._clients: dict[str, httpx.Client] = {}
        self._lock = threading.Lock()
        self._turn = itertools.count()

    def _client(self, base: str) -> httpx.Client:
        with self._lock:
            client = self._clients.get(base)
            if client is None:
                client = self._clients[base] = make_client(base, self._log)
            return client

    def call(
        self, method: str, path: str, *, bound_s: float = 90.0, **kwargs: Any
    ) -> httpx.Response:
        """The first answer that is not a transport error or a 503, within ``bound_s``."""
        deadline = time.monotonic() + bound_s
        attempt = 0
        while True:
            bases = list(self._bases())
            base = bases[next(self._turn) % len(bases)]
            wait = 0.5
            try:
                response = self._client(base).request(method, path, **kwargs)
            except httpx.TransportError:
                pass
            else:
                if response.status_code != 503:
                    return response
                wait = min(_seconds(response.headers.get("retry-after")), 5.0)
            attempt += 1
            if time.monotonic() + wait > deadline:
                raise GaveUp(f"{method} {path}: no answer in {bound_s:.0f}s ({attempt} tries)")
            time.sleep(wait)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.call(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


def _seconds(value: str | None) -> float:
    try:
        return max(0.2, float(value or "1"))
    except ValueError:
        return 1.0
