"""The SQLite store under faults nobody scripted, driven over HTTP against `upscale serve`."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from orchestrator.common.clock import SystemClock
from orchestrator.common.settings import Secret
from orchestrator.security.signing import CallbackSigner
from tests.e2e.harness import (
    SECRET,
    TOKEN,
    Proc,
    Sandbox,
    Service,
    free_port,
    service_env,
    start_service,
)
from tests.factories import make_png

pytestmark = pytest.mark.e2e

LOAD_S = 8.0
SERVE = (sys.executable, "-m", "orchestrator.cli", "serve")


async def _load(base: str) -> tuple[Counter[str], list[str]]:
    """Six callback posters, two list readers and two job creators at once, for LOAD_S.
    Returns the status codes seen per kind of request and the ids of the jobs created."""
    signer = CallbackSigner([Secret(SECRET)], SystemClock())
    token = signer.for_job("upsampler", "job_nobody", time.time() + 3600)
    image = base64.b64encode(make_png(8, 8)).decode()
    statuses: Counter[str] = Counter()
    created: list[str] = []
    ends = time.monotonic() + LOAD_S
    async with httpx.AsyncClient(
        base_url=base,
        timeout=30.0,
        trust_env=False,
        headers={"Authorization": f"Bearer {TOKEN}"},
        limits=httpx.Limits(max_connections=16),
    ) as client:

        async def poster(n: int) -> None:
            i = 0
            while time.monotonic() < ends:
                i += 1
                body = json.dumps({"status": "PROCESSING", "id": f"p{n}-{i}"})
                r = await client.post(f"/callbacks/upsampler/{token}", content=body)
                statuses[f"callback {r.status_code}"] += 1

        async def reader() -> None:
            while time.monotonic() < ends:
                r = await client.get("/v1/jobs", params={"limit": 50})
                statuses[f"list {r.status_code}"] += 1

        async def creator() -> None:
            while time.monotonic() < ends:
                r = await client.post(
                    "/v1/jobs", json={"provider": "upsampler", "scale": 2, "image": image}
                )
                statuses[f"create {r.status_code}"] += 1
                if r.status_code == 202:
                    created.append(r.json()["id"])

        await asyncio.gather(
            *(poster(n) for n in range(6)), reader(), reader(), creator(), creator()
        )
    return statuses, created


async def test_concurrent_callbacks_reads_and_creates_never_answer_503(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    service = start_service(
        tmp_path,
        sandbox,
        env={"UPSCALE_UPSAMPLER_SUBMITS_PER_MIN": "0", "UPSCALE_UPSAMPLER_SUBMITS_PER_HOUR": "0"},
    )
    try:
        statuses, created = await _load(service.base)
        failed = {k: n for k, n in statuses.items() if not k.endswith((" 200", " 202"))}
        assert not failed, f"{failed} of {dict(statuses)}\n{service.proc.log()}"
        assert created and statuses["callback 200"] > 0 and statuses["list 200"] > 0
        jobs = await asyncio.to_thread(
            service.wait,
            created,
            timeout_s=90.0,
            done=lambda j: j["state"] not in ("queued", "submitting"),
        )
        lost = {
            i: j["state"]
            for i, j in jobs.items()
            if j["state"] == "uncertain" or j["provider_job_id"] is None
        }
        assert not lost, f"jobs without their provider id: {lost}"
        assert "loop.error" not in service.proc.log()
    finally:
        service.close()


def test_a_deleted_database_is_noticed_and_not_silently_made_anew(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    service = start_service(tmp_path, sandbox)
    data_dir = service.data_dir
    signer = CallbackSigner([Secret(SECRET)], SystemClock())
    token = signer.for_job("upsampler", "job_nobody", time.time() + 3600)
    try:
        acknowledged = service.submit(make_png())
        assert service.client.get("/readyz").status_code == 200
        (data_dir / "upscale.db").unlink()

        ready = service.client.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert "deleted" in ready.json()["error"]
        created = service.client.post(
            "/v1/jobs", json={"provider": "upsampler", "scale": 2, "image": "https://x.test/a.png"}
        )
        assert created.status_code == 503 and created.headers["retry-after"], created.text
        callback = service.client.post(f"/callbacks/upsampler/{token}", content=b"{}")
        assert callback.status_code == 503 and callback.headers["retry-after"]
        # What was stored before is still readable from the file the process holds.
        assert service.job(acknowledged["id"])["id"] == acknowledged["id"]
    finally:
        service.close()

    with pytest.raises(RuntimeError, match="UPSCALE_ALLOW_NEW_DATABASE") as refused:
        start_service(tmp_path, sandbox, data_dir=data_dir)
    assert "exited early" in str(refused.value)
    assert not (data_dir / "upscale.db").exists()

    # Told to, it starts on an empty database.
    port = free_port()
    proc = Proc(
        [*SERVE, "--port", str(port), "--allow-new-database"],
        service_env(data_dir, sandbox),
        tmp_path / f"service-{port}.log",
        f"http://127.0.0.1:{port}/readyz",
    )
    proc.start()
    fresh = Service(port, data_dir, proc)
    try:
        assert fresh.client.get("/readyz").status_code == 200
        assert fresh.client.get("/v1/jobs").json()["jobs"] == []
        assert fresh.submit(make_png())["state"] == "queued"
    finally:
        fresh.close()
