"""What the service and the sandbox say at the end of a phase, read over HTTP."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tests.e2e.harness import Sandbox
from tests.soak.api import Api, GaveUp
from tests.soak.config import PROVIDERS

INBOX_PAGE = 1000


@dataclass
class Observed:
    jobs: dict[str, dict[str, Any]]
    histories: dict[str, list[dict[str, Any]]]
    deliveries: dict[str, dict[str, Any]]
    results: dict[str, tuple[int, str] | str]
    events: list[dict[str, Any]]
    sandbox: dict[str, dict[str, int]]
    truncated: list[str]


def all_jobs(api: Api) -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = {}
    after = None
    for _ in range(10_000):  # bounded: 500 a page
        params: dict[str, Any] = {"limit": 500}
        if after:
            params["after"] = after
        page = api.json("GET", "/v1/jobs", params=params)
        for job in page["jobs"]:
            jobs[job["id"]] = job
        after = page.get("next")
        if not after or not page["jobs"]:
            break
    return jobs


def all_events(api: Api) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = ""
    for _ in range(10_000):
        page = api.json("GET", "/v1/events", params={"after": after, "limit": 1000})
        if not page["events"]:
            break
        events += page["events"]
        after = page["next"]
    return events


def deliveries_with_status(
    api: Api, status: str, provider: str | None = None
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"status": status, "limit": INBOX_PAGE}
    if provider:
        params["provider"] = provider
    found: list[dict[str, Any]] = api.json("GET", "/v1/deliveries", params=params)["deliveries"]
    return found


def observe(api: Api, sandbox: Sandbox) -> Observed:
    jobs = all_jobs(api)

    def history(job_id: str) -> tuple[str, list[dict[str, Any]]]:
        return job_id, api.json("GET", f"/v1/jobs/{job_id}/history")["history"]

    def deliveries(job_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = api.json(
            "GET", "/v1/deliveries", params={"job_id": job_id, "limit": 1000}
        )["deliveries"]
        return found

    def result(job_id: str) -> tuple[str, tuple[int, str] | str]:
        try:
            response = api.call("GET", f"/v1/jobs/{job_id}/result")
        except GaveUp as exc:
            return job_id, str(exc)
        if response.status_code != 200:
            return job_id, f"HTTP {response.status_code}"
        return job_id, (len(response.content), hashlib.sha256(response.content).hexdigest())

    with ThreadPoolExecutor(4) as pool:
        histories = dict(pool.map(history, jobs))
        inbox: dict[str, dict[str, Any]] = {}
        for found in pool.map(deliveries, jobs):
            inbox.update((d["id"], d) for d in found)
        succeeded = [i for i, j in jobs.items() if j["state"] == "succeeded"]
        results = dict(pool.map(result, succeeded))
    # Deliveries bound to no job (unmatched ones, dead ones that could not be parsed,
    # a duplicate of an account-webhook callback). The inbox listing has no cursor:
    # one page of 1,000 per provider and status, and a note when a page is full.
    truncated = []
    for provider in PROVIDERS:
        for status in ("pending", "unmatched", "dead", "duplicate"):
            found = deliveries_with_status(api, status, provider)
            if len(found) >= INBOX_PAGE:
                truncated.append(f"{provider}/{status}")
            inbox.update((d["id"], d) for d in found)
    stats = sandbox.client.get("/stats")
    stats.raise_for_status()
    return Observed(jobs, histories, inbox, results, all_events(api), stats.json(), truncated)
