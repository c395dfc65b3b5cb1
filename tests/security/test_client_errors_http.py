"""The client mistakes that were 500s, once more against the running service over HTTP.

``test_client_errors.py`` covers each in depth in process; this is the same list
as a client on the internet sends it, through the listener: every answer a 4xx
in the error envelope, nothing logged at ERROR.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from orchestrator.common.clock import SystemClock
from orchestrator.common.settings import Secret
from orchestrator.security.signing import InputSigner
from tests.e2e.harness import SECRET, Service
from tests.security.standalone import standalone_service

pytestmark = pytest.mark.e2e

IMAGE_URL = "https://images.example.test/cat.png"
DEEP = "[" * 1000 + "]" * 1000
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # --web-only is not needed: nothing here is accepted, bar one job and one
    # subscription to public example addresses that are never reached in the test's time.
    with standalone_service(tmp_path_factory.mktemp("client-errors")) as svc:
        yield svc


@pytest.fixture(autouse=True)
def no_error_logged(service: Service) -> Iterator[None]:
    start = len(service.proc.log_path.read_bytes())
    yield
    time.sleep(0.1)
    logged = service.proc.log_path.read_bytes()[start:].decode(errors="replace")
    assert "Traceback" not in logged and " ERROR " not in logged, logged[-3000:]


@pytest.fixture(scope="module")
def ids(service: Service) -> dict[str, str]:
    job = service.client.post("/v1/jobs", json={"provider": "upsampler", "image": IMAGE_URL})
    assert job.status_code == 202, job.text
    sub = service.client.post("/v1/subscriptions", json={"url": "https://hooks.example.test/a"})
    assert sub.status_code == 201, sub.text
    return {"job": job.json()["id"], "subscription": sub.json()["id"]}


def client_error(answer: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert answer.status_code == status, (answer.status_code, answer.text[:300])
    assert answer.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = answer.json()["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    assert "object at 0x" not in error["message"]
    return error


def test_deeply_nested_json_is_400_on_every_body(service: Service, ids: dict[str, str]) -> None:
    paths = [
        "/v1/jobs",
        "/v1/subscriptions",
        "/v1/deliveries/replay",
        "/v1/reconcile",
        "/v1/events/evt_1/redeliver",
        f"/v1/subscriptions/{ids['subscription']}/secret",
        f"/v1/jobs/{ids['job']}/retry",
    ]
    for path in paths:
        answer = service.client.post(path, content=DEEP, headers=JSON)
        assert "nested" in client_error(answer)["message"], path
    metadata = "[" * 1000 + "]" * 1000
    body = f'{{"provider": "upsampler", "image": "{IMAGE_URL}", "metadata": {metadata}}}'
    assert (
        "nested"
        in client_error(service.client.post("/v1/jobs", content=body, headers=JSON))["message"]
    )


def test_huge_numbers_and_durations_are_400(service: Service, ids: dict[str, str]) -> None:
    answer = service.client.post(
        f"/v1/subscriptions/{ids['subscription']}/secret",
        content=b'{"grace_s": 1e308}',
        headers=JSON,
    )
    assert "grace_s" in client_error(answer)["message"]
    for path in ("/v1/jobs", "/v1/deliveries"):
        answer = service.client.get(path, params={"since": "99999999999d"})
        assert "since" in client_error(answer)["message"], path
    for path in ("/v1/reconcile", "/v1/deliveries/replay"):
        answer = service.client.post(path, json={"since": "99999999999d"})
        assert "since" in client_error(answer)["message"], path


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/v1/reconcile", {"state": []}, "state"),
        ("/v1/deliveries/replay", {"status": None}, "say which"),
        ("/v1/deliveries/replay", {"provider": []}, "provider"),
    ],
)
def test_wrong_types_are_400_not_5xx(
    service: Service, path: str, body: dict[str, Any], needle: str
) -> None:
    assert needle in client_error(service.client.post(path, json=body))["message"]


@pytest.mark.parametrize("body", [b"   ", b"\n", b"{}"])
def test_a_bulk_replay_without_a_filter_is_refused(service: Service, body: bytes) -> None:
    answer = service.client.post("/v1/deliveries/replay", content=body, headers=JSON)
    assert '"all": true' in client_error(answer)["message"]


@pytest.mark.parametrize("key", ["job_x.png\n", "job_x.png\r"])
def test_a_signed_input_key_with_a_line_break_is_404(service: Service, key: str) -> None:
    token = InputSigner((Secret(SECRET),), SystemClock()).sign(key, expires_at=4_000_000_000)
    client_error(service.client.get(f"/inputs/{token}"), 404)


def test_multipart_without_a_boundary_is_a_json_400(service: Service) -> None:
    answer = service.client.post(
        "/v1/jobs", content=b"--x\r\n", headers={"content-type": "multipart/form-data"}
    )
    assert "boundary" in client_error(answer)["message"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/v1/jobs", "GET, HEAD, POST"),
        ("OPTIONS", "/v1/reconcile", "POST"),
        ("PUT", "/v1/jobs", "GET, HEAD, POST"),
    ],
)
def test_method_not_allowed_names_the_allowed_methods(
    service: Service, method: str, path: str, allowed: str
) -> None:
    answer = service.client.request(method, path)
    assert client_error(answer, 405)["code"] == "method_not_allowed"
    assert answer.headers["allow"] == allowed


def test_the_same_idempotency_key_with_another_webhook_is_409(service: Service) -> None:
    key = {"Idempotency-Key": "http-order-7"}
    body = {"provider": "upsampler", "image": IMAGE_URL}
    first = service.client.post(
        "/v1/jobs", json={**body, "webhook_url": "https://a.example.test/h"}, headers=key
    )
    assert first.status_code == 202, first.text
    other = service.client.post(
        "/v1/jobs", json={**body, "webhook_url": "https://b.example.test/h"}, headers=key
    )
    assert client_error(other, 409)["code"] == "idempotency_conflict"
