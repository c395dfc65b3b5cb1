"""Routes through the public API: what a client may ask, what it is told."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import AppFactory
from tests.factories import make_png

IMAGE_URL = "https://images.example.test/cat.png"
ROUTES = {"UPSCALE_ROUTES": "default=upsampler,fotor,local;cheap=local"}


async def _post(client: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    return await client.post("/v1/jobs", json={"image": IMAGE_URL, **fields})


async def test_a_routed_job_shows_its_route_and_first_attempt(app_factory: AppFactory) -> None:
    async with app_factory(**ROUTES) as (_, _, client):
        answer = await _post(
            client,
            providers=["upsampler", "local"],
            options={"upsampler": {"endpoint": "precise"}},
            max_cost=5,
        )
        assert answer.status_code == 202, answer.text
        job = answer.json()
        assert job["provider"] == "upsampler"
        assert job["route"] == {"name": None, "providers": ["upsampler", "local"]}
        assert job["max_cost"] == 5
        [attempt] = job["attempts"]
        assert attempt["provider"] == "upsampler" and attempt["state"] == "queued"
        assert attempt["ended_at"] is None
        named = (await _post(client)).json()
        assert named["route"] == {"name": "default", "providers": ["upsampler", "fotor", "local"]}
        assert (await _post(client, route="cheap")).json()["provider"] == "local"


async def test_every_provider_of_a_route_is_checked_up_front(app_factory: AppFactory) -> None:
    async with app_factory(**ROUTES) as (_, _, client):
        cases = [
            ({"providers": ["upsampler", "nope"]}, "'nope' is not one of"),
            ({"route": "missing"}, "route must be one of: cheap, default"),
            (
                {"providers": ["upsampler", "local"], "options": {"local": {"endpoint": "x"}}},
                "options.local",
            ),
            ({"provider": "upsampler", "route": "cheap"}, "not several"),
        ]
        for body, message in cases:
            answer = await _post(client, **body)
            assert answer.status_code == 400, (body, answer.text)
            assert message in answer.json()["error"]["message"], answer.text


async def test_providers_show_their_cool_down_spend_and_the_routes(
    app_factory: AppFactory,
) -> None:
    async with app_factory(**ROUTES, UPSCALE_SPEND_CAPS="upsampler=100") as (_, runtime, client):
        store, now = runtime.store, runtime.orchestrator.clock.now()
        policy = runtime.orchestrator.config.cooldown
        for _ in range(policy.threshold):
            await store.record_provider_result("fotor", ok=False, now=now, policy=policy)
        listed = (await client.get("/v1/providers")).json()
        by_name = {p["name"]: p for p in listed["providers"]}
        assert by_name["fotor"]["health"]["state"] == "cooling"
        assert by_name["fotor"]["health"]["failures_in_a_row"] == policy.threshold
        assert by_name["upsampler"]["health"]["state"] == "healthy"
        assert by_name["upsampler"]["spend_today"] == {"credits": 0.0, "attempts": 0, "cap": 100}
        assert listed["routes"] == {"cheap": ["local"], "default": ["upsampler", "fotor", "local"]}
        metrics = (await client.get("/metrics")).text
        assert 'upscale_provider_cooling{provider="fotor"} 1.0' in metrics


async def test_a_route_with_a_provider_that_lacks_the_operation_is_refused(
    app_factory: AppFactory,
) -> None:
    png = make_png(8, 6)
    async with app_factory(**ROUTES) as (_, _, client):
        answer = await client.post(
            "/v1/jobs",
            data={"providers": "fotor,upsampler", "operation": "replace", "prompt": "A cat"},
            files={"image": ("a.png", png, "image/png"), "mask": ("m.png", png, "image/png")},
        )
        assert answer.status_code == 400, answer.text
        message = answer.json()["error"]["message"]
        assert "upsampler does not offer operation replace" in message
        assert (await client.get("/v1/jobs")).json()["jobs"] == []
