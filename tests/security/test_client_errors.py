"""Every client mistake is a 4xx JSON error; anything unexpected is one logged 500.

Each case here was a 500 (or a wrong answer) once; they drive the real app over
HTTP (in process, through httpx's ASGI transport).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.service.runtime import Runtime
from tests.conftest import AppFactory

IMAGE_URL = "https://images.example.test/cat.png"
DEEP = "[" * 1000 + "]" * 1000


def assert_client_error(answer: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = answer.json()["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    assert "object at 0x" not in error["message"]
    return error


async def _job(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    answer = await client.post(
        "/v1/jobs", json={"provider": "upsampler", "image": IMAGE_URL, **fields}
    )
    assert answer.status_code == 202, answer.text
    job: dict[str, Any] = answer.json()
    return job


async def _subscription(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = await client.post("/v1/subscriptions", json={"url": "https://hooks.example.test/a"})
    assert answer.status_code == 201, answer.text
    sub: dict[str, Any] = answer.json()
    return sub


async def _dead_delivery(client: httpx.AsyncClient, runtime: Runtime) -> str:
    injected = await client.post(
        "/v1/inject/upsampler", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert injected.status_code == 201, injected.text
    assert injected.json()["status"] == "dead"
    delivery_id: str = injected.json()["delivery"]
    return delivery_id


# --- deeply nested JSON ---------------------------------------------------------------


async def test_deeply_nested_json_is_400_on_every_body(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        job = await _job(client)
        sub = await _subscription(client)
        paths = [
            "/v1/jobs",
            "/v1/subscriptions",
            "/v1/deliveries/replay",
            "/v1/reconcile",
            "/v1/events/evt_1/redeliver",
            f"/v1/subscriptions/{sub['id']}/secret",
            f"/v1/jobs/{job['id']}/retry",
        ]
        for path in paths:
            answer = await client.post(
                path, content=DEEP, headers={"content-type": "application/json"}
            )
            error = assert_client_error(answer)
            assert "nested" in error["message"], path


@pytest.mark.parametrize("depth", [65, 1000, 5000])
async def test_deeply_nested_metadata_is_refused(app_factory: AppFactory, depth: int) -> None:
    metadata = "[" * depth + "]" * depth
    body = f'{{"provider": "upsampler", "image": "{IMAGE_URL}", "metadata": {metadata}}}'
    async with app_factory() as (_, _, client):
        answer = await client.post(
            "/v1/jobs", content=body, headers={"content-type": "application/json"}
        )
        assert "nested" in assert_client_error(answer)["message"]
        assert (await client.get("/v1/jobs")).json()["jobs"] == []


async def test_metadata_nested_within_the_limit_is_kept(app_factory: AppFactory) -> None:
    metadata: Any = "leaf"
    for _ in range(30):  # 60 levels, in a body one level deeper: within 64
        metadata = {"a": [metadata]}
    async with app_factory() as (_, _, client):
        job = await _job(client, metadata=metadata)
        assert (await client.get(f"/v1/jobs/{job['id']}")).json()["metadata"] == metadata


async def test_deep_json_in_a_multipart_field_is_400(app_factory: AppFactory) -> None:
    from tests.factories import make_png

    async with app_factory() as (_, _, client):
        answer = await client.post(
            "/v1/jobs",
            data={"provider": "upsampler", "metadata": DEEP},
            files={"image": ("a.png", make_png(), "image/png")},
        )
        assert "nested" in assert_client_error(answer)["message"]


async def test_non_standard_json_numbers_are_refused(app_factory: AppFactory) -> None:
    body = f'{{"provider": "upsampler", "image": "{IMAGE_URL}", "metadata": NaN}}'
    async with app_factory() as (_, _, client):
        answer = await client.post(
            "/v1/jobs", content=body, headers={"content-type": "application/json"}
        )
        assert_client_error(answer)


# --- numbers and durations ------------------------------------------------------------


@pytest.mark.parametrize("grace", ["1e308", "1" + "0" * 400, "-1", "true", '"10"'])
async def test_out_of_range_grace_is_400(app_factory: AppFactory, grace: str) -> None:
    async with app_factory() as (_, _, client):
        sub = await _subscription(client)
        answer = await client.post(
            f"/v1/subscriptions/{sub['id']}/secret",
            content=f'{{"grace_s": {grace}}}',
            headers={"content-type": "application/json"},
        )
        assert "grace_s" in assert_client_error(answer)["message"]


@pytest.mark.parametrize("since", ["99999999999d", "9" * 400, "1e9d", "2x", "-1h"])
async def test_out_of_range_since_is_400_everywhere(app_factory: AppFactory, since: str) -> None:
    async with app_factory() as (_, _, client):
        for path in ("/v1/jobs", "/v1/deliveries"):
            assert (
                "since"
                in assert_client_error(await client.get(path, params={"since": since}))["message"]
            )
        for path in ("/v1/reconcile", "/v1/deliveries/replay"):
            answer = await client.post(path, json={"since": since})
            assert "since" in assert_client_error(answer)["message"], path


async def test_a_reasonable_since_still_works(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        job = await _job(client)
        listed = await client.get("/v1/jobs", params={"since": "3650d"})
        assert [j["id"] for j in listed.json()["jobs"]] == [job["id"]]
        assert (await client.get("/v1/deliveries", params={"since": "24h"})).status_code == 200


# --- field types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/v1/reconcile", {"state": []}, "state"),
        ("/v1/reconcile", {"state": "done"}, "state"),
        ("/v1/reconcile", {"stuck": "yes"}, "stuck"),
        ("/v1/reconcile", {"dry_run": "false", "stuck": True}, "dry_run"),
        ("/v1/reconcile", {"since": 5}, "since"),
        ("/v1/reconcile", {"stuk": True}, "stuk"),
        ("/v1/deliveries/replay", {"status": None}, "say which"),
        ("/v1/deliveries/replay", {"status": ["dead"]}, "status"),
        ("/v1/deliveries/replay", {"provider": []}, "provider"),
        ("/v1/deliveries/replay", {"provider": "nope"}, "provider"),
        ("/v1/deliveries/replay", {"all": "yes"}, "all"),
        ("/v1/deliveries/replay", {"stauts": "dead"}, "stauts"),
        ("/v1/events/evt_1/redeliver", {"subscription_id": 7}, "subscription_id"),
        ("/v1/subscriptions", {"url": "http://[::1"}, "URL"),
        ("/v1/subscriptions", {"url": ["https://a.test"]}, "url"),
    ],
)
async def test_wrong_field_types_are_400(
    app_factory: AppFactory, path: str, body: Any, needle: str
) -> None:
    async with app_factory() as (_, _, client):
        await _job(client)  # its job.queued event is evt_1
        answer = await client.post(path, json=body)
        assert needle in assert_client_error(answer)["message"]


async def test_a_dry_run_given_as_a_string_does_not_change_anything(
    app_factory: AppFactory,
) -> None:
    async with app_factory() as (_, _, client):
        answer = await client.post("/v1/reconcile", json={"dry_run": "false", "all": True})
        assert_client_error(answer)


async def test_retry_confirmation_must_be_a_boolean(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        job = await _job(client)
        answer = await client.post(f"/v1/jobs/{job['id']}/retry", json={"confirm_uncertain": "no"})
        assert "confirm_uncertain" in assert_client_error(answer)["message"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/jobs", {"limit": "ten"}),
        ("/v1/deliveries", {"limit": "ten"}),
        ("/v1/events", {"limit": "1e3"}),
        ("/v1/jobs/job_x/reconcile", {"dry_run": "perhaps"}),
    ],
)
async def test_wrong_query_parameters_are_400(
    app_factory: AppFactory, path: str, params: dict[str, str]
) -> None:
    async with app_factory() as (_, _, client):
        method = "POST" if path.endswith("reconcile") else "GET"
        await _job(client)
        answer = await client.request(method, path, params=params)
        assert answer.status_code in (400, 404), answer.text
        assert_client_error(answer, answer.status_code)


async def test_an_event_id_with_non_ascii_digits_is_404(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        for event_id in ("evt_²", "evt_١٢"):
            assert_client_error(await client.get(f"/v1/events/{event_id}"), 404)
        assert_client_error(await client.get("/v1/events", params={"after": "evt_²"}))


# --- bulk operations need a filter ----------------------------------------------------


@pytest.mark.parametrize("body", [b"   ", b"\n", b"{}", b'{"status": null}'])
async def test_a_bulk_replay_without_a_filter_replays_nothing(
    app_factory: AppFactory, body: bytes
) -> None:
    async with app_factory() as (_, runtime, client):
        delivery_id = await _dead_delivery(client, runtime)
        answer = await client.post(
            "/v1/deliveries/replay", content=body, headers={"content-type": "application/json"}
        )
        assert '"all": true' in assert_client_error(answer)["message"]
        shown = (await client.get(f"/v1/deliveries/{delivery_id}")).json()
        assert shown["replays"] == 0


@pytest.mark.parametrize("body", [{"all": True}, {"status": "dead"}, {"since": "1h"}])
async def test_a_bulk_replay_with_a_filter_or_all_replays(
    app_factory: AppFactory, body: dict[str, Any]
) -> None:
    async with app_factory() as (_, runtime, client):
        delivery_id = await _dead_delivery(client, runtime)
        answer = await client.post("/v1/deliveries/replay", json=body)
        assert answer.status_code == 200, answer.text
        assert [r["delivery_id"] for r in answer.json()["replayed"]] == [delivery_id]


async def test_a_bulk_reconcile_without_a_filter_is_refused(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        await _job(client)
        assert_client_error(await client.post("/v1/reconcile", content=b" "))
        everything = await client.post("/v1/reconcile", json={"all": True, "dry_run": True})
        assert everything.status_code == 202
        lines = [json.loads(line) for line in everything.text.splitlines()]
        assert len(lines[0]["queued"]) == 1
        assert lines[-1] == {"done": 1}


# --- routing and parsing errors use the envelope --------------------------------------


async def test_multipart_without_a_boundary_is_a_json_400(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        answer = await client.post(
            "/v1/jobs", content=b"--x\r\n", headers={"content-type": "multipart/form-data"}
        )
        assert "boundary" in assert_client_error(answer)["message"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/v1/jobs", "GET, HEAD, POST"),
        ("PUT", "/v1/jobs", "GET, HEAD, POST"),
        ("PATCH", "/v1/jobs/job_x", "DELETE, GET, HEAD"),
        ("GET", "/v1/reconcile", "POST"),
        ("OPTIONS", "/callbacks/upsampler/tok", "POST"),
    ],
)
async def test_method_not_allowed_names_every_allowed_method(
    app_factory: AppFactory, method: str, path: str, allowed: str
) -> None:
    async with app_factory() as (_, _, client):
        answer = await client.request(method, path)
        assert assert_client_error(answer, 405)["code"] == "method_not_allowed"
        assert answer.headers["allow"] == allowed


async def test_unknown_route_is_a_json_404(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        assert_client_error(await client.get("/v2/nothing"), 404)


# --- idempotency covers the webhook ---------------------------------------------------


async def test_same_idempotency_key_with_another_webhook_is_409(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        key = {"Idempotency-Key": "order-7"}
        body = {"provider": "upsampler", "image": IMAGE_URL}
        first = await client.post(
            "/v1/jobs", json={**body, "webhook_url": "https://a.example.test/h"}, headers=key
        )
        assert first.status_code == 202
        same = await client.post(
            "/v1/jobs", json={**body, "webhook_url": "https://a.example.test/h"}, headers=key
        )
        assert same.status_code == 200
        assert same.json()["webhook"]["url"] == "https://a.example.test/h"
        other = await client.post(
            "/v1/jobs", json={**body, "webhook_url": "https://b.example.test/h"}, headers=key
        )
        assert assert_client_error(other, 409)["code"] == "idempotency_conflict"
        without = await client.post("/v1/jobs", json=body, headers=key)
        assert_client_error(without, 409)


async def test_idempotency_without_a_webhook_is_unchanged(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        key = {"Idempotency-Key": "order-8"}
        body = {"provider": "upsampler", "image": IMAGE_URL}
        first = await client.post("/v1/jobs", json=body, headers=key)
        again = await client.post("/v1/jobs", json=body, headers=key)
        assert (first.status_code, again.status_code) == (202, 200)
        assert first.json()["id"] == again.json()["id"]


# --- input tokens -------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["job_x.png\n", "job_x.png\n\n", "job_x.png\r"])
async def test_a_signed_input_key_with_a_line_break_is_404(
    app_factory: AppFactory, key: str
) -> None:
    async with app_factory() as (_, runtime, client):
        token = runtime.input_signer.sign(key, expires_at=4_000_000_000)
        assert_client_error(await client.get(f"/inputs/{token}"), 404)


# --- the unexpected -----------------------------------------------------------------------


async def test_an_unexpected_error_is_one_logged_500_with_a_request_id(
    app_factory: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async def boom(request: Request) -> Response:
        await request.body()
        raise RuntimeError("something nobody expected")

    async with app_factory() as (app, _, client):
        # A route of the test's own: nothing in the app fails on purpose.
        app.router.routes.append(Route("/boom", boom, methods=["POST"]))
        caplog.set_level(logging.INFO)
        caplog.clear()
        answer = await client.post("/boom", content=b"secret-body-content")
        assert answer.status_code == 500
        error = answer.json()["error"]
        assert error["code"] == "internal_error"
        request_id = answer.headers["x-request-id"]
        assert error["request_id"] == request_id and request_id in error["message"]
        assert "something nobody expected" not in answer.text
        failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(failures) == 1
        (record,) = failures
        assert record.exc_info is not None
        assert getattr(record, "request_id", None) == request_id
        assert getattr(record, "route", None) == "/boom"
        assert "secret-body-content" not in caplog.text
