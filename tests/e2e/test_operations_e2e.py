"""Operating it: callbacks lost while the service is down, then reconcile, inject, replay."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.harness import TOKEN, Sandbox, Service, free_port, start_service
from tests.factories import make_png

pytestmark = pytest.mark.e2e


def _cli(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPSCALE_")}
    env.update({"UPSCALE_URL": service.base, "UPSCALE_API_TOKEN": TOKEN})
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _snapshot(service: Service) -> tuple[list[tuple[str, str, int]], int]:
    db = sqlite3.connect(service.data_dir / "upscale.db")
    try:
        jobs = db.execute("SELECT id, state, version FROM jobs ORDER BY id").fetchall()
        events = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        return [(r[0], r[1], r[2]) for r in jobs], int(events)
    finally:
        db.close()


def test_lost_callbacks_reconcile_inject_and_replay(tmp_path: Path, sandbox: Sandbox) -> None:
    port = free_port()
    data = tmp_path / "data"
    # Polling an hour out: only the callbacks (lost below) or an operator can finish them.
    env = {"UPSCALE_POLL_GRACE_S": "3600", "UPSCALE_STUCK_AFTER_S": "0"}
    sandbox.faults(processing_s=1.5)
    svc = start_service(tmp_path, sandbox, port=port, data_dir=data, env=env)
    ids = [svc.submit(make_png(10 + i, 8))["id"] for i in range(4)]
    svc.wait(ids, done=lambda j: j["state"] == "submitted")
    svc.close()  # down while the sandbox sends its callbacks (3 tries each, then given up)
    time.sleep(4)
    assert sandbox.stats()["callbacks_failed"] >= 4
    svc = start_service(tmp_path, sandbox, port=port, data_dir=data, env=env)
    try:
        assert {svc.job(i)["state"] for i in ids} == {"submitted"}
        stuck = _cli(svc, "jobs", "stuck")
        assert stuck.returncode == 0 and all(i in stuck.stdout for i in ids)

        before = _snapshot(svc)
        dry = _cli(svc, "reconcile", "--stuck", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert dry.stdout.count("would go submitted -> fetching") == 4
        assert _snapshot(svc) == before  # nothing changed: jobs, versions, events

        real = _cli(svc, "reconcile", "--stuck")
        assert real.returncode == 0 and real.stdout.count("went submitted -> fetching") == 4
        jobs = svc.wait(ids)
        assert {j["state"] for j in jobs.values()} == {"succeeded"}
        for job_id in ids:
            history = svc.history(job_id)
            assert [h["to"] for h in history].count("succeeded") == 1
            assert [h["cause"] for h in history if h["to"] == "fetching"] == ["reconcile"]

        # A callback captured elsewhere, injected by hand: stored, marked, and harmless.
        payload = tmp_path / "payload.json"
        status = sandbox.client.get(
            f"/upsampler/api/v1/status/{jobs[ids[0]]['provider_job_id']}",
            headers={"Authorization": "Bearer x"},
        ).json()
        payload.write_text(json.dumps(status))
        injected = _cli(
            svc, "replay", "--provider", "upsampler", "--file", str(payload), "--job", ids[0]
        )
        assert injected.returncode == 0 and "applied" in injected.stdout, injected.stderr
        assert [h["to"] for h in svc.history(ids[0])].count("succeeded") == 1

        # A garbled capture is kept as a dead letter, listed, and replay says what it did.
        payload.write_text("{not json")
        dead = _cli(
            svc, "replay", "--provider", "upsampler", "--file", str(payload), "--job", ids[1]
        )
        assert "dead" in dead.stdout
        listed = _cli(svc, "deliveries", "list", "--status", "dead")
        assert listed.stdout.count("injected") == 1 and "unparseable" in listed.stdout
        replayed = _cli(svc, "deliveries", "replay", "--status", "dead", "--since", "1h")
        assert replayed.returncode == 0 and "replayed 1 deliveries" in replayed.stdout

        applied = svc.client.get("/v1/deliveries", params={"status": "applied"}).json()
        first = applied["deliveries"][0]["id"]
        again = _cli(svc, "deliveries", "replay", first)
        assert "already applied" in again.stdout
        shown = svc.client.get(f"/v1/deliveries/{first}").json()
        assert shown["source"] == "injected" and shown["body"]
    finally:
        svc.close()


def test_cancel_and_retry(tmp_path: Path, sandbox: Sandbox, service: Service) -> None:
    sandbox.faults(processing_s=30, drop_callback=1)
    job = service.submit(make_png())
    service.wait([job["id"]], done=lambda j: j["state"] == "submitted")
    cancelled = _cli(service, "jobs", "cancel", job["id"])
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    again = _cli(service, "jobs", "cancel", job["id"])
    assert again.returncode != 0 and "already cancelled" in again.stderr

    sandbox.faults(submit_timeout=1, submit_timeout_s=8, drop_callback=1)
    svc = start_service(
        tmp_path,
        sandbox,
        port=free_port(),
        data_dir=tmp_path / "d2",
        env={"UPSCALE_SUBMIT_TIMEOUT_S": "1"},
    )
    try:
        uncertain = svc.submit(make_png())
        svc.wait([uncertain["id"]], done=lambda j: j["state"] == "uncertain")
        refused = _cli(svc, "jobs", "retry", uncertain["id"])
        assert refused.returncode != 0 and "--yes" in refused.stderr
        sandbox.faults()
        retried = _cli(svc, "jobs", "retry", uncertain["id"], "--yes", "--json")
        assert retried.returncode == 0, retried.stderr
        new = json.loads(retried.stdout)
        assert new["retry_of"] == uncertain["id"] and new["id"] != uncertain["id"]
        assert svc.wait([new["id"]])[new["id"]]["state"] == "succeeded"
    finally:
        svc.close()


def test_bulk_reconcile_answers_at_once_and_keeps_the_status_budget(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    env = {
        "UPSCALE_POLL_GRACE_S": "3600",
        "UPSCALE_STUCK_AFTER_S": "0",
        "UPSCALE_UPSAMPLER_STATUS_PER_MIN": "2",
    }
    sandbox.faults(drop_callback=1)  # every job stuck at submitted
    svc = start_service(tmp_path, sandbox, env=env)
    try:
        ids = [svc.submit(make_png(10 + i, 8))["id"] for i in range(4)]
        svc.wait(ids, done=lambda j: j["state"] == "submitted")
        # Reconcile once the provider has finished them all (their callbacks were
        # dropped): on a slow machine a job can still be running when it is asked.
        deadline = time.monotonic() + 30.0
        while sandbox.stats().get("callbacks_dropped", 0) < len(ids):
            assert time.monotonic() < deadline, sandbox.stats()
            time.sleep(0.05)
        calls_before = sandbox.stats().get("status_calls", 0)

        started = time.monotonic()
        lines: list[dict[str, object]] = []
        with svc.client.stream("POST", "/v1/reconcile", json={"stuck": True}) as response:
            assert response.status_code == 202
            stream = response.iter_lines()
            first = json.loads(next(stream))
            # What was queued comes back at once, not after the provider calls.
            assert time.monotonic() - started < 2.0
            assert sorted(first["queued"]) == sorted(ids)  # type: ignore[call-overload]
            while time.monotonic() - started < 5.0:
                lines.append(json.loads(next(stream)))
                if len(lines) == 2:
                    break
        time.sleep(3.0)  # the rest waits for the status budget (2 a minute)

        assert [line["result"]["after"] for line in lines] == ["fetching", "fetching"], lines  # type: ignore[index]
        assert sandbox.stats().get("status_calls", 0) - calls_before == 2
        states = sorted(svc.job(i)["state"] for i in ids)
        assert states.count("submitted") == 2, states
        metrics = svc.client.get("/metrics").text
        counted = [
            line
            for line in metrics.splitlines()
            if line.startswith("upscale_provider_calls_total") and 'call="reconcile"' in line
        ]
        assert sum(float(line.rsplit(" ", 1)[1]) for line in counted) == 2.0, counted
    finally:
        svc.close()
