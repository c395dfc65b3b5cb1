"""Fotor, Photio and Artnex over real HTTP: the service and a standalone sandbox."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from orchestrator.common.clock import SystemClock
from orchestrator.common.settings import Secret
from orchestrator.security.signing import CallbackSigner
from tests.e2e.harness import SECRET, Sandbox, Service, start_service
from tests.e2e.test_pipeline import _CountingServer
from tests.factories import make_png

pytestmark = pytest.mark.e2e


def _fotor_url(service: Service) -> str:
    token = CallbackSigner([Secret(SECRET)], SystemClock()).for_account("fotor")
    return f"{service.base}/callbacks/fotor/{token}"


@pytest.fixture
def fotor(service: Service, sandbox: Sandbox) -> Service:
    """The service with its account webhook registered at the (sandbox) Fotor account."""
    sandbox.client.put("/fotor/webhook", json={"url": _fotor_url(service)}).raise_for_status()
    return service


def _deliveries(service: Service) -> list[tuple[str, str | None]]:
    db = sqlite3.connect(service.data_dir / "upscale.db")
    try:
        rows = db.execute(
            "SELECT status, provider_job_id FROM deliveries WHERE provider = 'fotor' "
            "ORDER BY received_at"
        ).fetchall()
        return [(r[0], r[1]) for r in rows]
    finally:
        db.close()


def _terminal_transitions(service: Service, job_id: str) -> int:
    return sum(
        1 for h in service.history(job_id) if h["to"] in ("succeeded", "failed", "cancelled")
    )


def _wait_deliveries(service: Service, count: int) -> list[tuple[str, str | None]]:
    deadline = time.monotonic() + 10
    rows = _deliveries(service)
    while time.monotonic() < deadline and (
        len(rows) < count or any(status == "pending" for status, _ in rows)
    ):
        time.sleep(0.05)
        rows = _deliveries(service)
    return rows


def test_fotor_job_succeeds_through_the_account_webhook(fotor: Service, sandbox: Sandbox) -> None:
    job = fotor.submit(make_png(30, 20), provider="fotor")
    done = fotor.wait([job["id"]])[job["id"]]
    assert done["state"] == "succeeded"
    assert (done["result"]["width"], done["result"]["height"]) == (60, 40)
    assert len(done["provider_job_id"]) == 32
    rows = _wait_deliveries(fotor, 2)
    # A progress callback (status 0) and the completion: both applied, nothing else.
    assert {status for status, _ in rows} == {"applied"}
    assert _terminal_transitions(fotor, job["id"]) == 1


def test_fotor_dropped_callbacks_end_through_polling(fotor: Service, sandbox: Sandbox) -> None:
    sandbox.faults(drop_callback=1)
    job = fotor.submit(make_png(), provider="fotor")
    assert fotor.wait([job["id"]])[job["id"]]["state"] == "succeeded"
    assert _deliveries(fotor) == []
    assert sandbox.stats("fotor")["status_calls"] >= 1


@pytest.mark.parametrize(
    "faults",
    [{"duplicate_callback": 1}, {"early_callback": 1}, {"early_callback": 1, "s3_result": 1}],
    ids=["duplicate", "early", "early-s3"],
)
def test_fotor_odd_callbacks_give_one_terminal_transition(
    fotor: Service, sandbox: Sandbox, faults: dict[str, float]
) -> None:
    sandbox.faults(**faults)
    ids = [fotor.submit(make_png(12 + i, 9), provider="fotor")["id"] for i in range(3)]
    jobs = fotor.wait(ids)
    assert {j["state"] for j in jobs.values()} == {"succeeded"}
    assert [_terminal_transitions(fotor, i) for i in ids] == [1, 1, 1]
    assert sorted(p.stem for p in fotor.result_files()) == sorted(ids)
    rows = _wait_deliveries(fotor, 1)
    assert all(status in ("applied", "duplicate") for status, _ in rows), rows
    assert sandbox.stats("fotor")["jobs_created"] == 3


def test_fotor_stale_and_unknown_callbacks_change_nothing(fotor: Service, sandbox: Sandbox) -> None:
    job = fotor.submit(make_png(), provider="fotor")
    done = fotor.wait([job["id"]])[job["id"]]
    url = _fotor_url(fotor)
    task = done["provider_job_id"]
    stale = [
        {"taskId": task, "status": 0, "type": "imgupscale"},
        {"taskId": task, "status": 2, "type": "imgupscale"},
        {"taskId": task, "status": 1, "type": "imgupscale", "resultUrl": "https://x.test/y.png"},
    ]
    for body in stale:
        assert httpx.post(url, json=body, trust_env=False).status_code == 200
    unknown = {"taskId": "f" * 32, "status": 1, "type": "imgupscale", "resultUrl": "https://x"}
    assert httpx.post(url, json=unknown, trust_env=False).status_code == 200
    # The job's own two callbacks, the three stale ones and the unknown one: a list
    # shows a delivery once the inbox pass has filed it.
    rows = _wait_deliveries(fotor, 6)
    assert ("unmatched", "f" * 32) in rows
    after = fotor.job(job["id"])
    assert after["state"] == "succeeded" and after["result"] == done["result"]
    assert after["updated_at"] == done["updated_at"]
    assert _terminal_transitions(fotor, job["id"]) == 1


def test_fotor_forged_callback_with_a_foreign_url_does_not_become_the_result(
    fotor: Service, sandbox: Sandbox
) -> None:
    sandbox.faults(processing_s=2, drop_callback=1)
    with _CountingServer() as foreign:
        job = fotor.submit(make_png(20, 10), provider="fotor")
        running = fotor.wait([job["id"]], done=lambda j: j["state"] == "submitted")[job["id"]]
        forged = {
            "taskId": running["provider_job_id"],
            "status": 1,
            "type": "imgupscale",
            "resultUrl": f"http://127.0.0.1:{foreign.port}/sandbox/fotor/results/evil.png",
        }
        assert httpx.post(_fotor_url(fotor), json=forged, trust_env=False).status_code == 200
        done = fotor.wait([job["id"]])[job["id"]]
        assert done["state"] == "succeeded"
        assert foreign.connections == 0
    image = fotor.client.get(f"/v1/jobs/{job['id']}/result").content
    assert hashlib.sha256(image).hexdigest() == done["result"]["sha256"]
    assert (done["result"]["width"], done["result"]["height"]) == (40, 20)


@pytest.mark.parametrize(
    ("faults", "reason"),
    [
        ({"nsfw": 1}, "nsfw"),
        ({"empty_result": 1}, "provider_failed"),
        ({"no_credit": 1}, "insufficient_credit"),
        ({"error_in_200": 1}, "provider_failed"),
    ],
)
def test_fotor_failures_have_their_reason(
    fotor: Service, sandbox: Sandbox, faults: dict[str, float], reason: str
) -> None:
    sandbox.faults(**faults)
    job = fotor.submit(make_png(), provider="fotor")
    done = fotor.wait([job["id"]])[job["id"]]
    assert done["state"] == "failed" and done["failure"]["reason"] == reason


def test_fotor_balance_through_the_api(fotor: Service, sandbox: Sandbox) -> None:
    balance = fotor.client.get("/v1/providers/fotor/balance").json()
    assert balance["provider"] == "fotor" and balance["remaining"] <= balance["total"]
    missing = fotor.client.get("/v1/providers/upsampler/balance")
    assert missing.status_code == 400


@pytest.mark.parametrize("provider", ["photio", "artnex"])
def test_sync_providers_succeed(service: Service, sandbox: Sandbox, provider: str) -> None:
    job = service.submit(make_png(25, 15), provider=provider, scale=2)
    done = service.wait([job["id"]])[job["id"]]
    assert done["state"] == "succeeded", done
    assert (done["result"]["width"], done["result"]["height"]) == (50, 30)
    assert sandbox.stats(provider)["submits"] == 1


def test_photio_data_uri_answer_succeeds(service: Service, sandbox: Sandbox) -> None:
    sandbox.faults(data_uri_body=1)
    job = service.submit(make_png(), provider="photio")
    assert service.wait([job["id"]])[job["id"]]["state"] == "succeeded"


@pytest.mark.parametrize(
    ("provider", "faults", "reason"),
    [
        ("photio", {"corrupt_result": 1}, "result_invalid"),
        ("photio", {"status_in_body": 1}, "provider_failed"),
        ("artnex", {"corrupt_result": 1}, "result_invalid"),
        ("artnex", {"no_credit": 1}, "insufficient_credit"),
        ("artnex", {"expire_result": 1}, "result_expired"),
    ],
)
def test_sync_provider_failures(
    service: Service, sandbox: Sandbox, provider: str, faults: dict[str, float], reason: str
) -> None:
    sandbox.faults(**faults)
    job = service.submit(make_png(), provider=provider)
    done = service.wait([job["id"]])[job["id"]]
    assert done["state"] == "failed" and done["failure"]["reason"] == reason, done
    assert sandbox.stats(provider)["submits"] == 1  # never resubmitted


@pytest.mark.parametrize("provider", ["photio", "artnex"])
def test_sync_timeout_leaves_the_job_uncertain(
    tmp_path: Path, sandbox: Sandbox, provider: str
) -> None:
    svc = start_service(tmp_path, sandbox, env={"UPSCALE_SYNC_TIMEOUT_S": "1"})
    try:
        sandbox.faults(submit_timeout=1, submit_timeout_s=4)
        job = svc.submit(make_png(), provider=provider)
        done = svc.wait([job["id"]])[job["id"]]
        assert done["state"] == "uncertain"
        time.sleep(1.5)
        assert svc.job(job["id"])["state"] == "uncertain"
        assert sandbox.stats(provider)["submits"] == 1
    finally:
        svc.close()


def test_artnex_daily_quota_holds_jobs_instead_of_hammering(
    service: Service, sandbox: Sandbox
) -> None:
    sandbox.faults(quota_per_day=1)
    first = service.submit(make_png(), provider="artnex")
    assert service.wait([first["id"]])[first["id"]]["state"] == "succeeded"
    second = service.submit(make_png(), provider="artnex")
    time.sleep(2)
    assert service.job(second["id"])["state"] == "queued"
    assert sandbox.stats("artnex")["submits"] == 2  # one 429, then it waits


@pytest.mark.parametrize("provider", ["photio", "artnex"])
def test_sync_jobs_with_the_same_answer_both_succeed(
    service: Service, sandbox: Sandbox, provider: str
) -> None:
    # The same input twice gets the same answer (for Photio, byte for byte): each
    # job still gets its own result, promptly, and never waits out a lease.
    image = make_png(21, 13)
    ids = [service.submit(image, provider=provider)["id"] for _ in range(2)]
    jobs = service.wait(ids, timeout_s=20)
    assert {i: j["state"] for i, j in jobs.items()} == dict.fromkeys(ids, "succeeded")
    assert jobs[ids[0]]["provider_job_id"] != jobs[ids[1]]["provider_job_id"]
    assert sorted(p.stem for p in service.result_files()) == sorted(ids)
    assert sandbox.stats(provider)["submits"] == 2
