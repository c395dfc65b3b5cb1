"""Routed jobs against the standalone sandbox, as real processes: fallbacks when a
provider refuses, cool-downs and their probe, an uncertain attempt held for an
operator, and never more than one submit per attempt at a paid provider."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Sandbox, Service, start_service
from tests.factories import make_png

pytestmark = pytest.mark.e2e


def _submit(service: Service, providers: str) -> dict[str, Any]:
    response = service.client.post(
        "/v1/jobs",
        data={"providers": providers, "scale": "2"},
        files={"image": ("in.png", make_png(16, 12), "image/png")},
    )
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def _provider_faults(sandbox: Sandbox, provider: str, **values: Any) -> None:
    sandbox.client.put(f"/faults/{provider}", json=values).raise_for_status()


def _health(service: Service, provider: str) -> dict[str, Any]:
    listed = service.client.get("/v1/providers").json()["providers"]
    health: dict[str, Any] = next(p for p in listed if p["name"] == provider)["health"]
    return health


def _events(service: Service, job_id: str) -> list[str]:
    events = service.client.get("/v1/events", params={"limit": 500}).json()["events"]
    return [e["type"] for e in events if e["data"]["id"] == job_id]


@pytest.fixture
def routing(tmp_path: Path, sandbox: Sandbox) -> Iterator[Service]:
    svc = start_service(
        tmp_path,
        sandbox,
        env={
            "UPSCALE_FAILOVER_SUBMIT_TRIES": "1",
            "UPSCALE_COOLDOWN_FAILURES": "2",
            "UPSCALE_COOLDOWN_BASE_S": "3",
        },
    )
    try:
        yield svc
    finally:
        svc.close()


def test_a_route_succeeds_on_fotor_when_upsampler_refuses_every_submit(
    routing: Service, sandbox: Sandbox
) -> None:
    _provider_faults(sandbox, "upsampler", submit_500=1)
    job = _submit(routing, "upsampler,fotor,local")
    done = routing.wait([job["id"]], timeout_s=60)[job["id"]]
    assert done["state"] == "succeeded", done
    assert done["provider"] == "fotor" and done["id"] == job["id"]
    first, second = done["attempts"]
    assert (first["provider"], first["state"]) == ("upsampler", "failed")
    assert (second["provider"], second["state"]) == ("fotor", "succeeded")
    # One submit per attempt (UPSCALE_FAILOVER_SUBMIT_TRIES=1), and nothing paid there.
    assert sandbox.stats("upsampler")["submits"] == 1
    assert sandbox.stats("upsampler").get("jobs_created", 0) == 0
    assert sandbox.stats("fotor")["submits"] == 1
    assert _events(routing, job["id"]) == [
        "job.queued",
        "job.attempt_failed",
        "job.failed_over",
        "job.submitted",
        "job.succeeded",
    ]


def test_a_route_ends_on_local_when_both_paid_providers_are_out_of_credit(
    routing: Service, sandbox: Sandbox
) -> None:
    _provider_faults(sandbox, "upsampler", no_credit=1)
    _provider_faults(sandbox, "fotor", no_credit=1)
    job = _submit(routing, "upsampler,fotor,local")
    done = routing.wait([job["id"]], timeout_s=60)[job["id"]]
    assert done["state"] == "succeeded", done
    assert done["provider"] == "local"
    reasons = [a["failure"]["reason"] for a in done["attempts"][:2]]
    assert reasons == ["insufficient_credit", "insufficient_credit"]
    assert sandbox.stats("upsampler")["submits"] == 1
    assert sandbox.stats("fotor")["submits"] == 1
    assert done["result"]["width"] == 32


def test_a_failing_provider_is_cooled_down_skipped_and_later_probed(
    routing: Service, sandbox: Sandbox
) -> None:
    _provider_faults(sandbox, "upsampler", no_credit=1)
    for _ in range(2):  # UPSCALE_COOLDOWN_FAILURES
        job = _submit(routing, "upsampler,local")
        assert routing.wait([job["id"]], timeout_s=60)[job["id"]]["provider"] == "local"
    assert _health(routing, "upsampler")["state"] == "cooling"
    skipped = _submit(routing, "upsampler,local")
    done = routing.wait([skipped["id"]], timeout_s=60)[skipped["id"]]
    assert done["state"] == "succeeded" and done["provider"] == "local"
    assert done["attempts"][0]["state"] == "skipped"
    assert sandbox.stats("upsampler")["submits"] == 2  # nothing sent while cooling
    sandbox.faults()  # Upsampler is back
    time.sleep(3.5)  # UPSCALE_COOLDOWN_BASE_S
    probe = _submit(routing, "upsampler,local")
    done = routing.wait([probe["id"]], timeout_s=60)[probe["id"]]
    assert done["state"] == "succeeded" and done["provider"] == "upsampler"
    assert len(done["attempts"]) == 1
    assert sandbox.stats("upsampler")["submits"] == 3
    assert _health(routing, "upsampler")["state"] == "healthy"
    metrics = routing.client.get("/metrics").text
    assert 'upscale_provider_cooldowns{provider="upsampler"} 1.0' in metrics


def test_an_uncertain_attempt_is_held_until_an_operator_confirms_it(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    svc = start_service(tmp_path, sandbox, env={"UPSCALE_SUBMIT_TIMEOUT_S": "1"})
    try:
        _provider_faults(sandbox, "upsampler", submit_timeout=1, submit_timeout_s=4)
        sandbox.client.put("/faults", json={"drop_callback": 1}).raise_for_status()
        job = _submit(svc, "upsampler,fotor")
        svc.wait([job["id"]], timeout_s=30, done=lambda j: j["state"] == "uncertain")
        time.sleep(3)
        held = svc.job(job["id"])
        assert held["state"] == "uncertain" and held["provider"] == "upsampler"
        assert sandbox.stats("fotor").get("submits", 0) == 0
        refused = svc.client.post(f"/v1/jobs/{job['id']}/retry", json={})
        assert refused.status_code == 400
        moved = svc.client.post(f"/v1/jobs/{job['id']}/retry", json={"confirm_uncertain": True})
        assert moved.status_code == 202, moved.text
        assert moved.json()["id"] == job["id"] and moved.json()["provider"] == "fotor"
        done = svc.wait([job["id"]], timeout_s=60)[job["id"]]
        assert done["state"] == "succeeded" and done["provider"] == "fotor"
        assert done["attempts"][0]["failure"]["reason"] == "operator_confirmed"
        assert sandbox.stats("upsampler")["submits"] == 1
        assert sandbox.stats("fotor")["submits"] == 1
    finally:
        svc.close()
