"""The job load: every provider, identical inputs among them, a steady rate with bursts."""

from __future__ import annotations

import base64
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tests.factories import make_png
from tests.soak.api import Api, GaveUp
from tests.soak.config import PROVIDERS


@dataclass(frozen=True)
class JobSpec:
    key: str  # Idempotency-Key: a submit cut off by a kill can be sent again safely
    body: dict[str, Any]


def job_specs(rng: random.Random, count: int, prefix: str) -> list[JobSpec]:
    """``count`` jobs spread over the providers; about a third reuse one of a few inputs."""
    shared = [make_png(rng.randint(8, 40), rng.randint(8, 40), _colour(rng)) for _ in range(8)]
    specs = []
    for n in range(count):
        provider = PROVIDERS[n % len(PROVIDERS)]
        if rng.random() < 0.35:
            image = rng.choice(shared)
        else:
            image = make_png(rng.randint(8, 48), rng.randint(8, 48), _colour(rng))
        body: dict[str, Any] = {
            "provider": provider,
            "scale": 2,
            "image": base64.b64encode(image).decode(),
            "metadata": {"soak": n},
        }
        if provider == "local":
            body["options"] = {"engine": "lanczos"}
        specs.append(JobSpec(f"{prefix}-{n}", body))
    return specs


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


@dataclass
class LoadResult:
    accepted: dict[str, str] = field(default_factory=dict)  # idempotency key -> job id
    refused: list[str] = field(default_factory=list)  # key: status or error
    lock: threading.Lock = field(default_factory=threading.Lock)


def run_load(
    api: Api, specs: list[JobSpec], load_s: float, rng: random.Random, stop: threading.Event
) -> LoadResult:
    """Submit ``specs`` over ``load_s``: a steady stream, and about every tenth of the
    run a burst of 4% of the jobs at once."""
    result = LoadResult()
    burst = max(5, len(specs) // 25)
    bursts = 6
    steady = max(1, len(specs) - burst * bursts)
    interval = load_s / steady
    started = time.monotonic()
    next_burst = load_s / (bursts + 1)

    def submit(spec: JobSpec) -> None:
        try:
            response = api.call(
                "POST", "/v1/jobs", json=spec.body, headers={"Idempotency-Key": spec.key}
            )
        except GaveUp as exc:
            with result.lock:
                result.refused.append(f"{spec.key}: {exc}")
            return
        with result.lock:
            if response.status_code in (200, 202):
                result.accepted[spec.key] = response.json()["id"]
            else:
                result.refused.append(
                    f"{spec.key}: HTTP {response.status_code} {response.text[:200]}"
                )

    with ThreadPoolExecutor(6) as pool:
        todo = list(specs)
        sent = 0
        while todo and not stop.is_set():
            elapsed = time.monotonic() - started
            if elapsed >= next_burst and len(todo) > burst:
                batch, todo = todo[:burst], todo[burst:]
                list(pool.map(submit, batch))
                next_burst += load_s / (bursts + 1)
                continue
            submit(todo.pop(0))
            sent += 1
            due = started + sent * interval
            delay = due - time.monotonic()
            if delay > 0:
                stop.wait(min(delay, 5.0) * rng.uniform(0.5, 1.5))
    return result
