"""Operators at work during the load: replays, bulk replays of dead deliveries,
reconciles, cancels and retries, all through the HTTP API."""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

from tests.soak.api import Api, GaveUp


class Operators:
    def __init__(self, api: Api, rng: random.Random, every_s: float = 1.5) -> None:
        self.api = api
        self.rng = rng
        self.every_s = every_s
        self.actions: Counter[str] = Counter()  # "action status"
        self.cancelled: set[str] = set()  # jobs a cancel was answered 200 for

    def run(self, stop: threading.Event, until: float) -> None:
        import time

        actions = [
            (self.replay_one, 4),
            (self.replay_dead, 2),
            (self.reconcile_stuck, 1),
            (self.reconcile_one, 3),
            (self.cancel_one, 1),
            (self.retry_one, 2),
        ]
        funcs = [a for a, _ in actions]
        weights = [w for _, w in actions]
        while not stop.is_set() and time.monotonic() < until:
            action = self.rng.choices(funcs, weights)[0]
            try:
                action()
            except GaveUp:
                self.actions[f"{action.__name__} gave-up"] += 1
            stop.wait(self.every_s * self.rng.uniform(0.5, 1.5))

    def _note(self, name: str, status: int) -> None:
        self.actions[f"{name} {status}"] += 1

    def _some_job(self, state: str | None = None) -> dict[str, Any] | None:
        params: dict[str, Any] = {"limit": 50}
        if state:
            params["state"] = state
        jobs = self.api.json("GET", "/v1/jobs", params=params)["jobs"]
        return self.rng.choice(jobs) if jobs else None

    def replay_one(self) -> None:
        found = self.api.json("GET", "/v1/deliveries", params={"limit": 100})["deliveries"]
        if found:
            delivery = self.rng.choice(found)
            response = self.api.call("POST", f"/v1/deliveries/{delivery['id']}/replay")
            self._note("replay", response.status_code)

    def replay_dead(self) -> None:
        response = self.api.call(
            "POST", "/v1/deliveries/replay", json={"status": "dead", "since": "1h"}
        )
        self._note("replay-dead", response.status_code)

    def reconcile_stuck(self) -> None:
        response = self.api.call("POST", "/v1/reconcile", json={"stuck": True}, bound_s=120)
        self._note("reconcile-stuck", response.status_code)

    def reconcile_one(self) -> None:
        job = self._some_job(self.rng.choice(["submitted", "uncertain", "succeeded"]))
        if job:
            response = self.api.call("POST", f"/v1/jobs/{job['id']}/reconcile")
            self._note("reconcile", response.status_code)

    def cancel_one(self) -> None:
        job = self._some_job(self.rng.choice(["queued", "submitted", "succeeded"]))
        if job:
            response = self.api.call("DELETE", f"/v1/jobs/{job['id']}")
            self._note("cancel", response.status_code)
            if response.status_code == 200:
                self.cancelled.add(job["id"])

    def retry_one(self) -> None:
        job = self._some_job(self.rng.choice(["failed", "uncertain"]))
        if job:
            response = self.api.call(
                "POST", f"/v1/jobs/{job['id']}/retry", json={"confirm_uncertain": True}
            )
            self._note("retry", response.status_code)
