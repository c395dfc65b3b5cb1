"""The pipeline over real HTTP: the service and a standalone sandbox as separate processes."""

from __future__ import annotations

import hashlib
import io
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from orchestrator.common.clock import SystemClock
from orchestrator.common.settings import Secret
from orchestrator.security.signing import CallbackSigner
from tests.e2e.harness import (
    SECRET,
    TOKEN,
    Sandbox,
    Service,
    free_port,
    start_service,
)
from tests.factories import make_png

pytestmark = pytest.mark.e2e


def _size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def _succeeded_transitions(service: Service, job_id: str) -> int:
    return sum(1 for h in service.history(job_id) if h["to"] == "succeeded")


def _deliveries(service: Service) -> list[tuple[str, str]]:
    db = sqlite3.connect(service.data_dir / "upscale.db")
    try:
        return db.execute("SELECT id, status FROM deliveries ORDER BY received_at").fetchall()
    finally:
        db.close()


def test_job_succeeds_and_result_is_twice_the_size(service: Service, sandbox: Sandbox) -> None:
    job = service.submit(make_png(40, 30), metadata='{"sku": "A-1"}')
    assert job["state"] == "queued" and job["metadata"] == {"sku": "A-1"}
    done = service.wait([job["id"]])[job["id"]]
    assert done["state"] == "succeeded", done
    assert (done["result"]["width"], done["result"]["height"]) == (80, 60)
    image = service.client.get(f"/v1/jobs/{job['id']}/result")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert hashlib.sha256(image.content).hexdigest() == done["result"]["sha256"]
    assert _size(image.content) == (80, 60)
    assert sandbox.stats()["callbacks_sent"] == 1


def test_dropped_callback_still_succeeds_through_polling(
    service: Service, sandbox: Sandbox
) -> None:
    sandbox.faults(drop_callback=1)
    job = service.submit(make_png())
    done = service.wait([job["id"]])[job["id"]]
    assert done["state"] == "succeeded"
    causes = [h["cause"] for h in service.history(job["id"]) if h["to"] == "fetching"]
    assert causes == ["poll"]
    stats = sandbox.stats()
    assert stats["callbacks_sent"] == 0 and stats["status_calls"] >= 1


@pytest.mark.parametrize(
    "faults",
    [
        {"duplicate_callback": 1},
        {"early_callback": 1},
        {"delay_callback_s": 1.5},
        {"duplicate_callback": 1, "early_callback": 1, "delay_callback_s": 0.3},
    ],
    ids=["duplicate", "early", "delayed", "all"],
)
def test_odd_callbacks_give_one_result_and_one_terminal_transition(
    service: Service, sandbox: Sandbox, faults: dict[str, float]
) -> None:
    sandbox.faults(**faults)
    ids = [service.submit(make_png(20 + i, 10))["id"] for i in range(4)]
    jobs = service.wait(ids)
    assert {j["state"] for j in jobs.values()} == {"succeeded"}
    assert [_succeeded_transitions(service, i) for i in ids] == [1, 1, 1, 1]
    files = service.result_files()
    assert sorted(f.stem for f in files) == sorted(ids)
    assert sandbox.stats()["jobs_created"] == 4


def test_duplicate_deliveries_are_stored_and_recognised(service: Service, sandbox: Sandbox) -> None:
    sandbox.faults(duplicate_callback=1)
    job = service.submit(make_png())
    service.wait([job["id"]])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(_deliveries(service)) < 2:
        time.sleep(0.05)
    statuses = sorted(s for _, s in _deliveries(service))
    assert statuses == ["applied", "duplicate"]


def _callback_url(service: Service, job_id: str, *, expires_in: float) -> str:
    signer = CallbackSigner([Secret(SECRET)], SystemClock())
    token = signer.for_job("upsampler", job_id, time.time() + expires_in)
    return f"{service.base}/callbacks/upsampler/{token}"


def test_forged_and_expired_tokens_get_404_and_change_nothing(
    service: Service, sandbox: Sandbox
) -> None:
    sandbox.faults(drop_callback=1, processing_s=30)
    job = service.submit(make_png())
    service.wait([job["id"]], done=lambda j: j["state"] == "submitted")
    body = {"id": "x", "status": "SUCCESS", "imageUrl": "http://127.0.0.1:1/evil.png"}
    before = _deliveries(service)
    urls = [
        f"{service.base}/callbacks/upsampler/forged-token",
        f"{service.base}/callbacks/upsampler/" + "A" * 400,
        _callback_url(service, job["id"], expires_in=-5),
        _callback_url(service, job["id"], expires_in=60).replace("/upsampler/", "/fotor/"),
    ]
    for url in urls:
        response = httpx.post(url, json=body, trust_env=False)
        assert response.status_code == 404
        assert response.json() == {"error": {"code": "not_found", "message": "not found"}}
    assert _deliveries(service) == before
    assert service.job(job["id"])["state"] == "submitted"


def test_body_over_the_cap_gets_413(tmp_path: Path, sandbox: Sandbox) -> None:
    svc = start_service(tmp_path, sandbox, env={"UPSCALE_MAX_CALLBACK_BYTES": "2048"})
    try:
        url = _callback_url(svc, "job_whatever", expires_in=60)
        big = b'{"id": "x", "status": "SUCCESS", "pad": "' + b"a" * 4096 + b'"}'
        assert httpx.post(url, content=big, trust_env=False).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: the cap holds while streaming
            for _ in range(8):
                yield b"a" * 1024

        response = httpx.post(url, content=chunks(), trust_env=False)
        assert response.status_code == 413
        assert _deliveries(svc) == []
        small = httpx.post(url, json={"id": "x", "status": "IN_PROGRESS"}, trust_env=False)
        assert small.status_code == 200
    finally:
        svc.close()


class _CountingServer:
    """A TCP listener on 127.0.0.1 that counts the connections made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def __enter__(self) -> _CountingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def test_result_on_a_forbidden_address_fails_the_job_without_a_request(
    service: Service, sandbox: Sandbox
) -> None:
    with _CountingServer() as forbidden:
        sandbox.faults(result_base_url=f"http://127.0.0.1:{forbidden.port}/sandbox")
        job = service.submit(make_png())
        done = service.wait([job["id"]])[job["id"]]
        assert done["state"] == "failed"
        assert done["failure"]["reason"] == "result_forbidden"
        assert done["failure"]["message"] == "host 127.0.0.1 resolves to a non-public address"
        assert forbidden.connections == 0
    assert service.result_files() == []


def test_expired_result_is_polled_once_more_then_fails(service: Service, sandbox: Sandbox) -> None:
    sandbox.faults(expire_result=1)
    job = service.submit(make_png())
    done = service.wait([job["id"]])[job["id"]]
    assert done["state"] == "failed" and done["failure"]["reason"] == "result_expired"
    events = [h["event"] for h in service.history(job["id"])]
    assert events.count("result_refresh") == 1


def test_corrupt_result_fails_as_invalid(service: Service, sandbox: Sandbox) -> None:
    sandbox.faults(corrupt_result=1)
    job = service.submit(make_png())
    done = service.wait([job["id"]])[job["id"]]
    assert done["state"] == "failed" and done["failure"]["reason"] == "result_invalid"
    assert service.result_files() == []


def test_throttled_submits_wait_and_succeed(service: Service, sandbox: Sandbox) -> None:
    sandbox.faults(submit_429=1, retry_after_s=0.5)
    job = service.submit(make_png())
    time.sleep(1.2)
    assert service.job(job["id"])["state"] == "queued"
    throttled = sandbox.stats()["submits"]
    assert 1 <= throttled <= 3  # Retry-After honoured, not hammered
    sandbox.faults()
    done = service.wait([job["id"]])[job["id"]]
    assert done["state"] == "succeeded"
    assert sandbox.stats()["jobs_created"] == 1


def test_submit_timeout_leaves_the_job_uncertain_and_never_resubmits(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    svc = start_service(tmp_path, sandbox, env={"UPSCALE_SUBMIT_TIMEOUT_S": "1"})
    try:
        sandbox.faults(submit_timeout=1, submit_timeout_s=4, drop_callback=1)
        job = svc.submit(make_png())
        done = svc.wait([job["id"]])[job["id"]]
        assert done["state"] == "uncertain"
        assert done["provider_job_id"] is None
        time.sleep(2)
        assert svc.job(job["id"])["state"] == "uncertain"
        assert sandbox.stats()["submits"] == 1
    finally:
        svc.close()


def test_uncertain_job_is_settled_by_its_late_callback(tmp_path: Path, sandbox: Sandbox) -> None:
    svc = start_service(tmp_path, sandbox, env={"UPSCALE_SUBMIT_TIMEOUT_S": "1"})
    try:
        sandbox.faults(submit_timeout=1, submit_timeout_s=3, delay_callback_s=2)
        job = svc.submit(make_png())
        svc.wait([job["id"]], done=lambda j: j["state"] == "uncertain")
        done = svc.wait([job["id"]], done=lambda j: j["state"] == "succeeded")
        assert done[job["id"]]["provider_job_id"]
        assert sandbox.stats()["submits"] == 1
    finally:
        svc.close()


def test_uncertain_job_is_settled_by_its_early_callback(tmp_path: Path, sandbox: Sandbox) -> None:
    # The callback comes while the submit call still waits for its answer, which
    # never comes: the job turns uncertain, and the callback that waited settles it.
    svc = start_service(tmp_path, sandbox, env={"UPSCALE_SUBMIT_TIMEOUT_S": "3"})
    try:
        sandbox.faults(early_callback=1, submit_timeout=1, submit_timeout_s=10)
        job = svc.submit(make_png(16, 12))
        done = svc.wait([job["id"]], timeout_s=20, done=lambda j: j["state"] == "succeeded")
        assert (done[job["id"]]["result"]["width"], done[job["id"]]["result"]["height"]) == (32, 24)
        states = [h["to"] for h in svc.history(job["id"])]
        assert states[-3:] == ["uncertain", "fetching", "succeeded"]
        deliveries = svc.client.get("/v1/deliveries").json()["deliveries"]
        assert [d["status"] for d in deliveries] == ["applied"]
        assert sandbox.stats()["submits"] == 1
    finally:
        svc.close()


def test_sigkill_with_jobs_in_flight_then_restart_finishes_every_job(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    port = free_port()
    data = tmp_path / "data"
    sandbox.faults(processing_s=1.0, delay_callback_s=0.5)
    svc = start_service(tmp_path, sandbox, port=port, data_dir=data)
    ids = [svc.submit(make_png(16 + i, 16))["id"] for i in range(12)]
    time.sleep(0.8)
    svc.proc.kill()
    svc.client.close()
    time.sleep(2.5)  # callbacks sent while we are down are lost after their retries
    svc = start_service(tmp_path, sandbox, port=port, data_dir=data)
    try:
        jobs = svc.wait(ids, timeout_s=60)
        states = [j["state"] for j in jobs.values()]
        assert set(states) <= {"succeeded", "uncertain"}, states
        assert states.count("succeeded") >= 10
        provider_ids = [j["provider_job_id"] for j in jobs.values() if j["provider_job_id"]]
        assert len(provider_ids) == len(set(provider_ids))
        stats = sandbox.stats()
        # No job was submitted twice: the sandbox created no more jobs than we have.
        assert stats["jobs_created"] <= len(ids)
        assert stats["jobs_created"] >= states.count("succeeded")
        assert [_succeeded_transitions(svc, i) for i in ids if jobs[i]["state"] == "succeeded"]
        assert len(svc.result_files()) == states.count("succeeded")
    finally:
        svc.close()


def test_cli_submit_wait_out_writes_an_image_twice_the_size(
    service: Service, tmp_path: Path
) -> None:
    src = tmp_path / "some.png"
    src.write_bytes(make_png(33, 21))
    out = tmp_path / "big.png"
    env = {"UPSCALE_URL": service.base, "UPSCALE_API_TOKEN": TOKEN, "PATH": ""}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "submit",
            str(src),
            "--provider",
            "upsampler",
            "--scale",
            "2",
            "--wait",
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stdout
    assert _size(out.read_bytes()) == (66, 42)
    listing = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "jobs", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert listing.returncode == 0 and "succeeded" in listing.stdout


def test_service_answers_503_when_the_store_cannot_commit(
    service: Service, sandbox: Sandbox
) -> None:
    url = _callback_url(service, "job_x", expires_in=60)
    db = sqlite3.connect(service.data_dir / "upscale.db", timeout=0.1)
    db.execute("BEGIN EXCLUSIVE")
    try:
        response = httpx.post(
            url, json={"id": "x", "status": "IN_PROGRESS"}, trust_env=False, timeout=20
        )
        assert response.status_code == 503
    finally:
        db.rollback()
        db.close()
    assert (
        httpx.post(url, json={"id": "x", "status": "IN_PROGRESS"}, trust_env=False).status_code
        == 200
    )
