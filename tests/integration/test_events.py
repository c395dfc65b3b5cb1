"""The orchestrator as an event source: outbox, feed, SSE and signed webhooks."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.domain.states import Event
from orchestrator.service.runtime import Runtime
from orchestrator.store.protocol import Changes
from schemas.jobs import Failure, JobState
from tests.conftest import AppFactory

JOB = {"provider": "upsampler", "image": "https://in.example/a.png", "scale": 2}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Consumer:
    """A webhook consumer on 127.0.0.1 that can be told to fail."""

    port: int = field(default_factory=_free_port)
    status: int = 200
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.body()
            if self.status < 300:
                self.received.append((dict(request.headers), body))
            return Response(status_code=self.status)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    def verified(self, secret: str) -> list[dict[str, Any]]:
        wh = Webhook(secret)
        return [wh.verify(body, headers) for headers, body in self.received]


@pytest.fixture
async def consumer() -> AsyncIterator[Consumer]:
    c = Consumer()
    server = uvicorn.Server(
        uvicorn.Config(c.app(), host="127.0.0.1", port=c.port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield c
    finally:
        server.should_exit = True
        await task


ENV = {"UPSCALE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1", "UPSCALE_WEBHOOK_RETRY_SCHEDULE_S": "0,0,0"}


async def _finish(runtime: Runtime, job_id: str, state: JobState = JobState.FAILED) -> None:
    """Drive a job to a terminal state directly through the store (no provider needed)."""
    job = await runtime.store.get_job(job_id)
    assert job is not None
    now = runtime.orchestrator.clock.now()
    if state is JobState.CANCELLED:
        await runtime.orchestrator.cancel(job)
        return
    job = await runtime.store.apply_transition(
        job, Event.SUBMIT_STARTED, JobState.SUBMITTING, cause="t", now=now
    )
    assert job is not None
    job = await runtime.store.apply_transition(
        job,
        Event.SUBMIT_ACCEPTED,
        JobState.SUBMITTED,
        cause="t",
        now=now,
        changes=Changes(provider_job_id=f"p-{job_id}"),
    )
    assert job is not None
    await runtime.store.apply_transition(
        job,
        Event.PROVIDER_FAILED,
        JobState.FAILED,
        cause="t",
        now=now,
        changes=Changes(failure=Failure("provider_failed", "no")),
    )


async def test_every_transition_writes_its_event_with_a_snapshot(app_factory: AppFactory) -> None:
    async with app_factory() as (_, runtime, client):
        job = (await client.post("/v1/jobs", json={**JOB, "metadata": {"sku": 7}})).json()
        await _finish(runtime, job["id"])
        page = (await client.get("/v1/events")).json()
        types = [e["type"] for e in page["events"]]
        assert types == ["job.queued", "job.submitted", "job.failed"]
        last = page["events"][-1]
        assert last["data"]["id"] == job["id"]
        assert last["data"]["state"] == "failed"
        assert last["data"]["metadata"] == {"sku": 7}
        assert last["data"]["failure"] == {"reason": "provider_failed", "message": "no"}
        assert set(last) == {"id", "type", "timestamp", "data"}
        ids = [e["id"] for e in page["events"]]
        assert ids == sorted(ids) and page["next"] == ids[-1]


async def test_feed_pages_by_cursor_and_filters_by_type(app_factory: AppFactory) -> None:
    async with app_factory() as (_, runtime, client):
        for _ in range(3):
            job = (await client.post("/v1/jobs", json=JOB)).json()
            await _finish(runtime, job["id"])
        seen: list[str] = []
        cursor = ""
        while True:
            page = (await client.get("/v1/events", params={"after": cursor, "limit": 2})).json()
            if not page["events"]:
                break
            seen += [e["id"] for e in page["events"]]
            cursor = page["next"]
        assert len(seen) == 9 and len(set(seen)) == 9
        failed = (await client.get("/v1/events", params={"type": "job.failed"})).json()
        assert [e["type"] for e in failed["events"]] == ["job.failed"] * 3
        assert (await client.get("/v1/events", params={"type": "job.nope"})).status_code == 400
        assert (await client.get("/v1/events", params={"after": "bogus"})).status_code == 400
        assert (await client.get("/v1/events")).status_code == 200
        no_auth = await client.get("/v1/events", headers={"Authorization": ""})
        assert no_auth.status_code == 401


async def test_subscriber_receives_verifiable_signed_events(
    app_factory: AppFactory, consumer: Consumer
) -> None:
    async with app_factory(**ENV) as (_, runtime, client):
        sub = (await client.post("/v1/subscriptions", json={"url": consumer.url})).json()
        assert sub["secret"].startswith("whsec_")
        job = (await client.post("/v1/jobs", json=JOB)).json()
        await _finish(runtime, job["id"])
        assert runtime.dispatcher is not None
        await runtime.dispatcher.run_until_idle()
        payloads = consumer.verified(sub["secret"])  # an off-the-shelf verifier
        assert [p["type"] for p in payloads] == ["job.queued", "job.submitted", "job.failed"]
        assert {p["data"]["id"] for p in payloads} == {job["id"]}
        ids = [h["webhook-id"] for h, _ in consumer.received]
        assert ids == sorted(ids) and len(set(ids)) == 3


async def test_consumer_down_then_up_gets_every_event_once(
    app_factory: AppFactory, consumer: Consumer
) -> None:
    env = {**ENV, "UPSCALE_WEBHOOK_RETRY_SCHEDULE_S": "0,0,0,0,0,0"}
    async with app_factory(**env) as (_, runtime, client):
        sub = (await client.post("/v1/subscriptions", json={"url": consumer.url})).json()
        consumer.status = 503
        jobs = [(await client.post("/v1/jobs", json=JOB)).json()["id"] for _ in range(3)]
        for job_id in jobs:
            await _finish(runtime, job_id)
        assert runtime.dispatcher is not None
        await runtime.dispatcher.run_once()
        await runtime.dispatcher.run_once()
        assert consumer.received == []
        consumer.status = 200
        await runtime.dispatcher.run_until_idle()
        payloads = consumer.verified(sub["secret"])
        assert len(payloads) == 9
        assert len({h["webhook-id"] for h, _ in consumer.received}) == 9
        for job_id in jobs:  # per job, in order
            kinds = [p["type"] for p in payloads if p["data"]["id"] == job_id]
            assert kinds == ["job.queued", "job.submitted", "job.failed"]
        listing = (await client.get(f"/v1/subscriptions/{sub['id']}/deliveries")).json()
        first = [d for d in listing["deliveries"] if d["attempts"][0]["status_code"] == 503]
        assert first and all(d["status"] == "delivered" for d in listing["deliveries"])


async def test_last_attempt_dead_letters_and_redelivery_works(
    app_factory: AppFactory, consumer: Consumer
) -> None:
    env = {**ENV, "UPSCALE_WEBHOOK_RETRY_SCHEDULE_S": "0"}
    async with app_factory(**env) as (_, runtime, client):
        sub = (await client.post("/v1/subscriptions", json={"url": consumer.url})).json()
        consumer.status = 500
        await client.post("/v1/jobs", json=JOB)
        assert runtime.dispatcher is not None
        await runtime.dispatcher.run_until_idle()
        dead = (
            await client.get(f"/v1/subscriptions/{sub['id']}/deliveries", params={"status": "dead"})
        ).json()["deliveries"]
        assert len(dead) == 1 and len(dead[0]["attempts"]) == 2
        consumer.status = 200
        answer = await client.post(
            f"/v1/events/{dead[0]['event_id']}/redeliver", json={"subscription_id": sub["id"]}
        )
        assert answer.status_code == 202 and answer.json()["queued"] == 1
        await runtime.dispatcher.run_until_idle()
        assert [p["type"] for p in consumer.verified(sub["secret"])] == ["job.queued"]
        missing = await client.post("/v1/events/evt_0000000000009999/redeliver")
        assert missing.status_code == 404


async def test_subscription_is_disabled_after_a_run_of_failures(
    app_factory: AppFactory, consumer: Consumer
) -> None:
    env = {
        **ENV,
        "UPSCALE_WEBHOOK_RETRY_SCHEDULE_S": "0,0,0,0",
        "UPSCALE_WEBHOOK_DISABLE_AFTER": "3",
    }
    async with app_factory(**env) as (_, runtime, client):
        sub = (await client.post("/v1/subscriptions", json={"url": consumer.url})).json()
        consumer.status = 500
        await client.post("/v1/jobs", json=JOB)
        assert runtime.dispatcher is not None
        await runtime.dispatcher.run_until_idle()
        shown = (await client.get(f"/v1/subscriptions/{sub['id']}")).json()
        assert shown["disabled"] is True and shown["consecutive_failures"] == 3
        consumer.status = 200
        await client.post(f"/v1/subscriptions/{sub['id']}/enable")
        await runtime.dispatcher.run_until_idle()
        assert [p["type"] for p in consumer.verified(sub["secret"])] == ["job.queued"]


async def test_rotated_secret_signs_with_old_and_new_during_grace(
    app_factory: AppFactory, consumer: Consumer
) -> None:
    async with app_factory(**ENV) as (_, runtime, client):
        sub = (await client.post("/v1/subscriptions", json={"url": consumer.url})).json()
        rotated = (
            await client.post(f"/v1/subscriptions/{sub['id']}/secret", json={"grace_s": 3600})
        ).json()
        assert rotated["secret"] != sub["secret"]
        await client.post("/v1/jobs", json=JOB)
        assert runtime.dispatcher is not None
        await runtime.dispatcher.run_until_idle()
        assert consumer.verified(sub["secret"])[0]["type"] == "job.queued"
        assert consumer.verified(rotated["secret"])[0]["type"] == "job.queued"
        # With no grace, the old secret stops signing at once.
        final = (
            await client.post(f"/v1/subscriptions/{sub['id']}/secret", json={"grace_s": 0})
        ).json()
        consumer.received.clear()
        await client.post("/v1/jobs", json=JOB)
        await runtime.dispatcher.run_until_idle()
        assert consumer.verified(final["secret"])
        with pytest.raises(Exception, match="signature"):
            consumer.verified(rotated["secret"])


async def test_per_job_webhook_url_gets_only_that_jobs_events(
    app_factory: AppFactory, consumer: Consumer
) -> None:
    async with app_factory(**ENV) as (_, runtime, client):
        answer = (await client.post("/v1/jobs", json={**JOB, "webhook_url": consumer.url})).json()
        secret = answer["webhook"]["secret"]
        other = (await client.post("/v1/jobs", json=JOB)).json()
        await _finish(runtime, answer["id"])
        await _finish(runtime, other["id"], JobState.CANCELLED)
        assert runtime.dispatcher is not None
        await runtime.dispatcher.run_until_idle()
        payloads = consumer.verified(secret)
        assert {p["data"]["id"] for p in payloads} == {answer["id"]}
        assert [p["type"] for p in payloads] == ["job.queued", "job.submitted", "job.failed"]
        bad = await client.post("/v1/jobs", json={**JOB, "webhook_url": "ftp://x"})
        assert bad.status_code == 400


async def test_subscriptions_api_validates_and_lists(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        assert (await client.post("/v1/subscriptions", json={"url": "nope"})).status_code == 400
        bad_type = await client.post(
            "/v1/subscriptions", json={"url": "https://x.example/h", "types": ["job.x"]}
        )
        assert bad_type.status_code == 400
        made = (
            await client.post(
                "/v1/subscriptions",
                json={"url": "https://x.example/h", "types": ["job.succeeded"]},
            )
        ).json()
        listed = (await client.get("/v1/subscriptions")).json()["subscriptions"]
        assert [s["id"] for s in listed] == [made["id"]] and "secret" not in listed[0]
        assert (await client.delete(f"/v1/subscriptions/{made['id']}")).status_code == 204
        assert (await client.delete(f"/v1/subscriptions/{made['id']}")).status_code == 404


async def _read_sse(
    client: httpx.AsyncClient, *, headers: dict[str, str], want: int
) -> list[tuple[str, dict[str, Any]]]:
    got: list[tuple[str, dict[str, Any]]] = []
    async with client.stream("GET", "/v1/events/stream", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event_id = None
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: ") and event_id:
                got.append((event_id, json.loads(line[6:])))
                if len(got) == want:
                    break
    return got


async def test_sse_resumes_after_last_event_id_without_gaps_or_duplicates(
    tmp_path: object,
) -> None:
    from pathlib import Path

    from tests.conftest import running_app

    base = Path(str(tmp_path))
    async with running_app(base, UPSCALE_SSE_HEARTBEAT_S="0.2") as (app, _, _):
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": "Bearer test-token"},
                timeout=10,
            ) as client:

                async def produce() -> None:
                    for _ in range(10):
                        await client.post("/v1/jobs", json=JOB)
                        await asyncio.sleep(0.02)

                producer = asyncio.create_task(produce())
                first = await _read_sse(client, headers={}, want=4)
                second = await _read_sse(client, headers={"Last-Event-ID": first[-1][0]}, want=6)
                await producer
                ids = [i for i, _ in first + second]
                assert len(ids) == 10 and len(set(ids)) == 10 and ids == sorted(ids)
                assert all(p["type"] == "job.queued" for _, p in first + second)
                bad = await client.get("/v1/events/stream", headers={"Last-Event-ID": "x"})
                assert bad.status_code == 400
        finally:
            server.should_exit = True
            await serving


async def test_python_api_follows_events(app_factory: AppFactory) -> None:
    from orchestrator.outbound.feed import follow_events

    async with app_factory() as (_, runtime, client):
        await client.post("/v1/jobs", json=JOB)
        seen: list[str] = []

        async def follow() -> None:
            async for event in follow_events(runtime.store, poll_s=0.05):
                seen.append(event.type)
                if len(seen) == 3:
                    return

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.05)
        await client.post("/v1/jobs", json=JOB)
        await client.post("/v1/jobs", json=JOB)
        await asyncio.wait_for(follower, 5)
        assert seen == ["job.queued"] * 3


async def test_events_match_the_published_json_schema(app_factory: AppFactory) -> None:
    import jsonschema

    from tests.unit.test_layers import ROOT

    schema = json.loads((ROOT / "schemas" / "event.schema.json").read_text())
    async with app_factory() as (_, runtime, client):
        job = (await client.post("/v1/jobs", json={**JOB, "metadata": [1, "x"]})).json()
        await _finish(runtime, job["id"])
        await client.delete(f"/v1/jobs/{(await client.post('/v1/jobs', json=JOB)).json()['id']}")
        events = (await client.get("/v1/events")).json()["events"]
        assert len(events) == 5
        for event in events:
            body = {k: v for k, v in event.items() if k != "id"}
            jsonschema.validate(body, schema)
