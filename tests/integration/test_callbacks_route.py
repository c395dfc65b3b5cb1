"""``POST /callbacks/{provider}/{token}``: store first, answer after, process off the request."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import closing
from typing import Any

import httpx

from orchestrator.service.runtime import Runtime
from orchestrator.store.protocol import DeliveryStatus
from schemas.jobs import Job
from tests.conftest import BASE, AppFactory

NOT_FOUND = {"error": {"code": "not_found", "message": "not found"}}
SUCCESS_BODY = (
    b'{"id": "ups-123", "status": "SUCCESS",'
    b' "imageUrl": "https://cdn.example.test/out.png", "creditCost": 1}'
)


async def _queued_job(runtime: Runtime, client: httpx.AsyncClient) -> Job:
    answer = await client.post(
        "/v1/jobs",
        json={"provider": "upsampler", "image": "https://images.example.test/in.png"},
    )
    assert answer.status_code == 202, answer.text
    job = await runtime.store.get_job(answer.json()["id"])
    assert job is not None
    return job


def _callback_path(runtime: Runtime, job: Job, provider: str = "upsampler") -> str:
    url = runtime.orchestrator.callback_url(provider, job)
    assert url.startswith(BASE)
    return url.removeprefix(BASE)


async def _post(client: httpx.AsyncClient, path: str, body: bytes, **kw: Any) -> httpx.Response:
    # Providers do not send our API token; the callback URL's token is the credential.
    headers = {"Authorization": "", "Content-Type": "application/json", **kw.pop("headers", {})}
    return await client.post(path, content=body, headers=headers, **kw)


async def test_valid_callback_is_stored_byte_for_byte_and_acknowledged(
    app_factory: AppFactory,
) -> None:
    # Odd spacing, key order and a non-ASCII character: kept exactly as sent.
    body = b'{ "status":"IN_PROGRESS",   "id":"ups-1", "note":"caf\xc3\xa9" }\n'
    async with app_factory() as (_, runtime, client):
        job = await _queued_job(runtime, client)
        answer = await _post(
            client, _callback_path(runtime, job), body, headers={"X-Request-Id": "req-9"}
        )
        assert answer.status_code == 200, answer.text
        reply = answer.json()
        assert reply["received"] is True
        assert isinstance(reply["delivery"], str) and reply["delivery"]

        delivery = await runtime.store.get_delivery(reply["delivery"])
        assert delivery is not None
        assert delivery.body == body
        assert delivery.status is DeliveryStatus.PENDING
        assert delivery.provider == "upsampler"
        assert delivery.claimed_job_id == job.id
        assert delivery.headers.get("x-request-id") == "req-9"
        assert "authorization" not in delivery.headers
        # Nothing was applied on the request path.
        unchanged = await runtime.store.get_job(job.id)
        assert unchanged is not None and unchanged.state.value == "queued"


async def test_unparseable_body_becomes_a_dead_letter(app_factory: AppFactory) -> None:
    async with app_factory() as (_, runtime, client):
        job = await _queued_job(runtime, client)
        answer = await _post(client, _callback_path(runtime, job), b"not json")
        assert answer.status_code == 200
        delivery_id = answer.json()["delivery"]

        assert await runtime.orchestrator.process_inbox() == 1
        delivery = await runtime.store.get_delivery(delivery_id)
        assert delivery is not None
        assert delivery.status is DeliveryStatus.DEAD
        assert delivery.error is not None and "unparseable" in delivery.error
        assert delivery.body == b"not json"
        # The dead letter is not picked up again, and the job is untouched.
        assert await runtime.orchestrator.process_inbox() == 0
        still = await runtime.store.get_job(job.id)
        assert still is not None and still.state.value == "queued"


async def test_callback_for_a_queued_job_waits_for_the_submit_answer(
    app_factory: AppFactory,
) -> None:
    async with app_factory() as (_, runtime, client):
        job = await _queued_job(runtime, client)
        answer = await _post(client, _callback_path(runtime, job), SUCCESS_BODY)
        assert answer.status_code == 200
        delivery_id = answer.json()["delivery"]

        assert await runtime.orchestrator.process_inbox() == 1
        delivery = await runtime.store.get_delivery(delivery_id)
        assert delivery is not None
        assert delivery.status is DeliveryStatus.PENDING
        assert delivery.job_id == job.id
        assert delivery.provider_job_id == "ups-123"
        assert delivery.error is None
        # It waits for the submit answer rather than being re-read on every pass...
        assert await runtime.orchestrator.process_inbox() == 0
        # ...and the job it raced is still queued (the success was not applied early).
        still = await runtime.store.get_job(job.id)
        assert still is not None and still.state.value == "queued"
        assert still.provider_job_id is None
        waiting = await runtime.store.deliveries_waiting_for(job.id, "upsampler", None)
        assert [d.id for d in waiting] == [delivery_id]


async def test_a_repeated_body_is_a_duplicate_once_the_inbox_files_it(
    app_factory: AppFactory,
) -> None:
    async with app_factory() as (_, runtime, client):
        job = await _queued_job(runtime, client)
        path = _callback_path(runtime, job)
        first = await _post(client, path, SUCCESS_BODY)
        second = await _post(client, path, SUCCESS_BODY)
        assert first.status_code == second.status_code == 200
        assert first.json()["delivery"] != second.json()["delivery"]
        # Acknowledged: both are there at once, pending.
        for answer in (first, second):
            got = await runtime.store.get_delivery(answer.json()["delivery"])
            assert got is not None and got.status is DeliveryStatus.PENDING

        # The inbox pass files them: only the first one is processed.
        assert await runtime.orchestrator.process_inbox() == 1
        two = await runtime.store.get_delivery(second.json()["delivery"])
        assert two is not None and two.status is DeliveryStatus.DUPLICATE
        assert two.body == SUCCESS_BODY
        assert await runtime.store.count_deliveries(DeliveryStatus.DUPLICATE) == 1

        # Another body for the same job is not a duplicate.
        third = await _post(client, path, SUCCESS_BODY.replace(b"ups-123", b"ups-124"))
        delivery = await runtime.store.get_delivery(third.json()["delivery"])
        assert delivery is not None and delivery.status is DeliveryStatus.PENDING


async def test_token_for_another_provider_is_a_bare_404(app_factory: AppFactory) -> None:
    async with app_factory() as (_, runtime, client):
        job = await _queued_job(runtime, client)
        foreign = runtime.callback_signer.for_job("other", job.id, job.deadline_at.timestamp() + 60)
        answer = await _post(client, f"/callbacks/upsampler/{foreign}", SUCCESS_BODY)
        assert answer.status_code == 404
        assert answer.json() == NOT_FOUND
        assert await runtime.store.count_deliveries() == 0


async def test_unknown_provider_in_path_is_a_bare_404(app_factory: AppFactory) -> None:
    async with app_factory() as (_, runtime, client):
        job = await _queued_job(runtime, client)
        token = _callback_path(runtime, job).rsplit("/", 1)[-1]
        answer = await _post(client, f"/callbacks/nope/{token}", SUCCESS_BODY)
        assert answer.status_code == 404
        assert answer.json() == NOT_FOUND
        assert await runtime.store.count_deliveries() == 0


async def test_forged_and_expired_tokens_are_bare_404s(app_factory: AppFactory) -> None:
    async with app_factory() as (_, runtime, client):
        job = await _queued_job(runtime, client)
        token = _callback_path(runtime, job).rsplit("/", 1)[-1]
        payload, _, signature = token.rpartition(".")
        expired = runtime.callback_signer.for_job("upsampler", job.id, 1_000_000)
        for bad in (f"{payload}.{'A' * len(signature)}", "garbage", expired):
            answer = await _post(client, f"/callbacks/upsampler/{bad}", SUCCESS_BODY)
            assert answer.status_code == 404, bad
            assert answer.json() == NOT_FOUND
        assert await runtime.store.count_deliveries() == 0


async def test_body_over_the_cap_is_413_and_not_stored(app_factory: AppFactory) -> None:
    async with app_factory(UPSCALE_MAX_CALLBACK_BYTES="100") as (_, runtime, client):
        job = await _queued_job(runtime, client)
        path = _callback_path(runtime, job)
        big = json.dumps({"id": "ups-1", "status": "SUCCESS", "pad": "x" * 200}).encode()
        answer = await _post(client, path, big)
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "payload_too_large"
        assert await runtime.store.count_deliveries() == 0

        # A body at the cap is stored.
        at_cap = b'{"id": "ups-1", "status": "IN_QUEUE"}'.ljust(100, b" ")
        assert len(at_cap) == 100
        ok = await _post(client, path, at_cap)
        assert ok.status_code == 200
        assert await runtime.store.count_deliveries() == 1


async def test_streamed_body_over_the_cap_without_length_is_413(app_factory: AppFactory) -> None:
    async def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 50

    async with app_factory(UPSCALE_MAX_CALLBACK_BYTES="100") as (_, runtime, client):
        job = await _queued_job(runtime, client)
        answer = await client.post(
            _callback_path(runtime, job), content=chunks(), headers={"Authorization": ""}
        )
        assert "content-length" not in answer.request.headers
        assert answer.status_code == 413
        assert await runtime.store.count_deliveries() == 0


async def test_bad_content_length_is_400(app_factory: AppFactory) -> None:
    async with app_factory() as (_, runtime, client):
        job = await _queued_job(runtime, client)
        answer = await _post(
            client, _callback_path(runtime, job), b"{}", headers={"Content-Length": "abc"}
        )
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "invalid_request"
        assert "Content-Length" in answer.json()["error"]["message"]
        assert await runtime.store.count_deliveries() == 0


async def test_the_delivery_is_committed_before_the_answer(app_factory: AppFactory) -> None:
    async with app_factory() as (_, runtime, client):
        job = await _queued_job(runtime, client)
        answer = await _post(client, _callback_path(runtime, job), SUCCESS_BODY)
        assert answer.status_code == 200
        delivery_id = answer.json()["delivery"]
        # Another connection (another process, after a crash) sees the row already.
        database = runtime.settings.database_path
        assert database.is_file()
        with closing(sqlite3.connect(database)) as conn:
            row = conn.execute(
                "SELECT body, claimed_job_id FROM received WHERE id = ?",
                (delivery_id,),
            ).fetchone()
        assert row is not None
        assert bytes(row[0]) == SUCCESS_BODY
        assert row[1] == job.id


async def test_a_callback_that_cannot_be_committed_gets_503_and_is_kept_on_retry(
    app_factory: AppFactory,
) -> None:
    async with app_factory(UPSCALE_SQLITE_BUSY_TIMEOUT_MS="50") as (_, runtime, client):
        job = await _queued_job(runtime, client)
        path = _callback_path(runtime, job)
        before = await runtime.store.count_deliveries()
        # Another process holds the database's write lock past the busy timeout.
        with closing(sqlite3.connect(runtime.settings.database_path)) as other:
            other.execute("BEGIN EXCLUSIVE")
            refused = await _post(client, path, SUCCESS_BODY)
            other.execute("ROLLBACK")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert refused.json()["error"]["code"] == "store_unavailable"
        assert await runtime.store.count_deliveries() == before
        # The provider's retry is stored and acknowledged as the first of its kind.
        retried = await _post(client, path, SUCCESS_BODY)
        assert retried.status_code == 200, retried.text
        stored = await runtime.store.get_delivery(retried.json()["delivery"])
        assert stored is not None and stored.status is DeliveryStatus.PENDING
        assert await runtime.store.count_deliveries() == before + 1


async def test_a_flood_of_one_bad_url_is_404s_counted_and_nothing_stored(
    app_factory: AppFactory,
) -> None:
    async with app_factory() as (_, runtime, client):
        job = await _queued_job(runtime, client)
        token = _callback_path(runtime, job).rsplit("/", 1)[-1]
        payload, _, signature = token.rpartition(".")
        forged = f"/callbacks/upsampler/{payload}.{'B' * len(signature)}"
        for _ in range(50):
            answer = await _post(client, forged, SUCCESS_BODY)
            assert answer.status_code == 404
            assert answer.json() == NOT_FOUND
        rejected = runtime.metrics.callbacks_rejected.labels("bad_token")._value.get()
        assert rejected == 50
        assert await runtime.store.count_deliveries() == 0
        # The genuine URL still works after the flood.
        genuine = await _post(client, _callback_path(runtime, job), SUCCESS_BODY)
        assert genuine.status_code == 200


async def test_other_methods_and_shapes_of_a_callback_url_get_the_usual_errors(
    app_factory: AppFactory,
) -> None:
    async with app_factory() as (_, runtime, client):
        job = await _queued_job(runtime, client)
        path = _callback_path(runtime, job)
        got = await client.get(path)
        assert got.status_code == 405
        assert got.headers["allow"] == "POST"
        deeper = await _post(client, path + "/more", SUCCESS_BODY)
        assert deeper.status_code == 404
        assert deeper.json()["error"]["code"] == "not_found"
        assert await runtime.store.count_deliveries() == 0


async def _call_with_body(
    app: Any, path: str, messages: list[dict[str, Any]], headers: tuple[Any, ...] = ()
) -> list[Any]:
    """Drive the app directly: the body as the given messages, then nothing more."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # the client stops sending
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    await asyncio.wait_for(app(scope, receive, send), 10)
    return sent


async def test_a_callback_body_that_stops_coming_gets_408_and_is_not_stored(
    app_factory: AppFactory,
) -> None:
    async with app_factory(UPSCALE_BODY_TIMEOUT_S="0.2") as (app, runtime, client):
        job = await _queued_job(runtime, client)
        first = {"type": "http.request", "body": SUCCESS_BODY[:10], "more_body": True}
        sent = await _call_with_body(app, _callback_path(runtime, job), [first])
        assert sent[0]["status"] == 408
        assert await runtime.store.count_deliveries() == 0


async def test_a_callback_whose_client_leaves_mid_body_is_not_stored(
    app_factory: AppFactory,
) -> None:
    async with app_factory() as (app, runtime, client):
        job = await _queued_job(runtime, client)
        first = {"type": "http.request", "body": SUCCESS_BODY[:10], "more_body": True}
        gone = {"type": "http.disconnect"}
        await _call_with_body(app, _callback_path(runtime, job), [first, gone])
        assert await runtime.store.count_deliveries() == 0


async def test_a_callback_body_in_several_chunks_is_stored_whole(app_factory: AppFactory) -> None:
    async with app_factory() as (app, runtime, client):
        job = await _queued_job(runtime, client)
        chunks = [
            {"type": "http.request", "body": SUCCESS_BODY[:7], "more_body": True},
            {"type": "http.request", "body": b"", "more_body": True},
            {"type": "http.request", "body": SUCCESS_BODY[7:], "more_body": False},
        ]
        sent = await _call_with_body(app, _callback_path(runtime, job), chunks)
        assert sent[0]["status"] == 200
        delivery_id = json.loads(sent[1]["body"])["delivery"]
        stored = await runtime.store.get_delivery(delivery_id)
        assert stored is not None and stored.body == SUCCESS_BODY


async def test_forwarded_for_on_several_lines_is_read_as_one_list(
    app_factory: AppFactory,
) -> None:
    """A trusted proxy that adds its own X-Forwarded-For line after the client's: the
    client's own line cannot make it pass the provider's address list."""
    fotor_ip, real_client = "198.51.100.7", "203.0.113.9"
    settings = {"UPSCALE_FOTOR_CALLBACK_IPS": fotor_ip, "UPSCALE_TRUSTED_PROXIES": "127.0.0.1/32"}
    async with app_factory(**settings) as (app, runtime, _):
        path = f"/callbacks/fotor/{runtime.callback_signer.for_account('fotor')}"
        body = {"type": "http.request", "body": b'{"task_id":"t1","status":1}'}
        forged = await _call_with_body(
            app,
            path,
            [dict(body)],
            ((b"x-forwarded-for", fotor_ip.encode()), (b"x-forwarded-for", real_client.encode())),
        )
        assert forged[0]["status"] == 403
        genuine = await _call_with_body(
            app, path, [dict(body)], ((b"x-forwarded-for", fotor_ip.encode()),)
        )
        assert genuine[0]["status"] == 200
        stored = await runtime.store.get_delivery(json.loads(genuine[1]["body"])["delivery"])
        assert stored is not None and stored.headers["x-forwarded-for"] == fotor_ip
