"""Failed sign-ins are limited per client address: after ``max_failures`` within
``window_s`` seconds, that address waits until the oldest of them ages out, even
with the right token. A pure record: the caller passes the time.

API tokens are long random strings, so guessing one is hopeless anyway; this keeps
a guesser from hammering the form. It counts per process (each web process keeps
its own), and forgets the oldest addresses past ``max_clients``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SignInThrottle:
    max_failures: int = 10
    window_s: float = 300.0
    max_clients: int = 10_000
    _failures: dict[str, list[float]] = field(default_factory=dict)

    def _recent(self, client: str, now: float) -> list[float]:
        return [t for t in self._failures.get(client, ()) if t > now - self.window_s]

    def wait_s(self, client: str, now: float) -> float:
        """0 when ``client`` may try to sign in now, else the seconds to wait."""
        recent = self._recent(client, now)
        if len(recent) < self.max_failures:
            return 0.0
        return max(0.0, recent[-self.max_failures] + self.window_s - now)

    def failed(self, client: str, now: float) -> None:
        recent = self._recent(client, now)
        recent.append(now)
        self._failures.pop(client, None)
        self._failures[client] = recent[-self.max_failures :]
        while len(self._failures) > self.max_clients:
            del self._failures[next(iter(self._failures))]  # the least recently failed

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)
