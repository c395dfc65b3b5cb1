"""The console's inbox, events and subscriptions pages against the real app: what an
operator sees and what each form changes (the browser tests drive the same pages)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from orchestrator.service.runtime import Runtime
from orchestrator.store.protocol import DeliveryStatus
from tests.conftest import BASE, running_app
from tests.security.test_console_security import OWN, signed_in

ID = re.compile(r'href="/console/inbox/(dlv_[0-9a-z]+)"')


class Console:
    def __init__(self, runtime: Runtime, api: httpx.AsyncClient, browser: httpx.AsyncClient):
        self.runtime = runtime
        self.api = api
        self.browser = browser
        self.csrf = ""

    async def post(self, path: str, **fields: str | list[str]) -> httpx.Response:
        return await self.browser.post(
            path, data={"csrf": self.csrf, **fields}, headers=OWN, follow_redirects=True
        )

    async def dead_delivery(self, body: bytes) -> str:
        answer = await self.api.post("/v1/inject/upsampler", content=body)
        assert answer.status_code == 201, answer.text
        assert answer.json()["status"] == "dead"
        return str(answer.json()["delivery"])


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    env = {"UPSCALE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1"}
    async with running_app(tmp_path, **env) as (app, runtime, api):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as browser:
            page = Console(runtime, api, browser)
            page.csrf = await signed_in(browser)
            yield page


async def test_dead_deliveries_are_listed_and_a_page_at_a_time(console: Console) -> None:
    made = [await console.dead_delivery(b"not json %d" % n) for n in range(5)]
    first = await console.browser.get("/console/inbox?status=dead&limit=3")
    assert first.status_code == 200
    assert ID.findall(first.text) == made[::-1][:3]
    older = re.search(r'href="/console/inbox\?([^"]+)" rel="next"', first.text)
    assert older is not None
    second = await console.browser.get("/console/inbox?" + older.group(1).replace("&amp;", "&"))
    assert ID.findall(second.text) == made[::-1][3:]
    assert 'rel="next"' not in second.text

    applied = await console.browser.get("/console/inbox?status=applied")
    assert ID.findall(applied.text) == []
    hostile = await console.browser.get("/console/inbox?status=<script>&provider=nope")
    assert hostile.status_code == 400
    assert "<script>" not in hostile.text


async def test_a_delivery_page_shows_its_body_escaped_and_replays_it(console: Console) -> None:
    delivery_id = await console.dead_delivery(b'{"task": "<script>alert(1)</script>", "n": [1]}')
    page = await console.browser.get(f"/console/inbox/{delivery_id}")
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert "&#34;task&#34;: &#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;" in page.text
    assert 'id="replays">0<' in page.text

    replayed = await console.post(f"/console/inbox/{delivery_id}/replay")
    assert replayed.status_code == 200
    assert "Replayed: now dead." in replayed.text
    assert 'id="replays">1<' in replayed.text
    stored = await console.runtime.store.get_delivery(delivery_id)
    assert stored is not None and stored.replays == 1

    assert (await console.browser.get("/console/inbox/dlv_nope")).status_code == 404


async def test_replaying_every_dead_delivery_says_how_many_first(console: Console) -> None:
    made = [await console.dead_delivery(b"garbage %d" % n) for n in range(3)]
    confirm = await console.browser.get("/console/inbox/replay?since=1h")
    assert confirm.status_code == 200
    assert re.search(r'id="replay-count"><strong>3</strong> dead deliveries', confirm.text)
    for delivery_id in made:  # nothing replayed by looking
        stored = await console.runtime.store.get_delivery(delivery_id)
        assert stored is not None and stored.replays == 0

    done = await console.post("/console/inbox/replay", since="1h", provider="")
    assert done.status_code == 200
    assert "Replayed 3 dead deliveries" in done.text
    for delivery_id in made:
        stored = await console.runtime.store.get_delivery(delivery_id)
        assert stored is not None and stored.replays == 1
        assert stored.status is DeliveryStatus.DEAD  # still garbage

    refused = await console.post("/console/inbox/replay", since="forever")
    assert refused.status_code == 400


async def test_a_new_or_rotated_secret_is_shown_once(console: Console) -> None:
    added = await console.post(
        "/console/subscriptions", url="http://127.0.0.1:9/hook", types=["job.succeeded"]
    )
    assert added.status_code == 200
    secret = re.search(r'id="new-secret">([^<]+)<', added.text)
    assert secret is not None
    [sub] = await console.runtime.store.list_subscriptions()
    assert sub.types == ("job.succeeded",)
    page = await console.browser.get(f"/console/subscriptions/{sub.id}")
    assert page.status_code == 200 and secret.group(1) not in page.text
    listing = await console.browser.get("/console/subscriptions")
    assert sub.id in listing.text and secret.group(1) not in listing.text

    rotated = await console.post(f"/console/subscriptions/{sub.id}/secret", grace_s="3600")
    fresh = re.search(r'id="new-secret">([^<]+)<', rotated.text)
    assert fresh is not None and fresh.group(1) != secret.group(1)
    again = await console.browser.get(f"/console/subscriptions/{sub.id}")
    assert fresh.group(1) not in again.text and secret.group(1) not in again.text
    assert "previous, signs until" in again.text

    removed = await console.post(f"/console/subscriptions/{sub.id}/remove")
    assert "The subscription was removed." in removed.text
    assert await console.runtime.store.list_subscriptions() == []


async def test_a_subscription_to_a_private_address_is_refused_with_the_reason(
    console: Console,
) -> None:
    refused = await console.post("/console/subscriptions", url="http://10.0.0.1/hook")
    assert refused.status_code == 400
    assert 'role="alert"' in refused.text
    assert await console.runtime.store.list_subscriptions() == []


async def test_events_are_listed_newest_first_with_their_deliveries(console: Console) -> None:
    for _ in range(2):
        answer = await console.api.post(
            "/v1/jobs", json={"provider": "upsampler", "image": "https://images.example.test/a.png"}
        )
        assert answer.status_code == 202
    page = await console.browser.get("/console/events")
    ids = re.findall(r'href="/console/events/(evt_\d+)"', page.text)
    assert len(ids) == 2 and ids == sorted(ids, reverse=True)
    event = await console.browser.get(f"/console/events/{ids[0]}")
    assert event.status_code == 200 and "job.queued" in event.text
    assert (await console.browser.get("/console/events/evt_x")).status_code == 404


async def test_a_failed_delivery_is_shown_with_its_attempt_then_redelivered_and_enabled(
    console: Console,
) -> None:
    added = await console.post("/console/subscriptions", url="http://127.0.0.1:9/hook")
    assert added.status_code == 200
    [sub] = await console.runtime.store.list_subscriptions()
    job = await console.api.post(
        "/v1/jobs", json={"provider": "upsampler", "image": "https://images.example.test/a.png"}
    )
    assert job.status_code == 202
    [record] = await console.runtime.store.list_outbound(subscription_id=sub.id)
    now = console.runtime.orchestrator.clock.now()
    await console.runtime.store.record_attempt(
        record.id,
        sub.id,
        now=now,
        ok=False,
        status_code=500,
        error="answered 500",
        duration_ms=12.34,
        retry_at=None,
        disable_after=1,
    )

    page = await console.browser.get(f"/console/subscriptions/{sub.id}")
    assert 'id="subscription-state">disabled<' in page.text
    assert 'class="attempt-status">500<' in page.text and "12.3 ms" in page.text
    assert "answered 500" in page.text

    redelivered = await console.post(
        f"/console/subscriptions/{sub.id}/redeliver", event_id=record.event_id
    )
    assert "Queued again for this subscription." in redelivered.text
    assert len(await console.runtime.store.list_outbound(subscription_id=sub.id)) == 2

    enabled = await console.post(f"/console/subscriptions/{sub.id}/enable")
    assert 'id="subscription-state">enabled<' in enabled.text
    fresh = await console.runtime.store.get_subscription(sub.id)
    assert fresh is not None and fresh.disabled_at is None

    unknown = await console.post(f"/console/subscriptions/{sub.id}/redeliver", event_id="evt_9")
    assert unknown.status_code == 404


async def test_filter_forms_sent_with_any_chosen_list_everything(console: Console) -> None:
    # A browser sends an empty value for a select left at "any".
    await console.dead_delivery(b"garbage")
    for path in (
        "/console/jobs?state=&provider=&operation=&since=&until=&q=",
        "/console/inbox?status=&provider=&since=",
        "/console/events?type=",
    ):
        answer = await console.browser.get(path)
        assert answer.status_code == 200, path
    inbox = await console.browser.get("/console/inbox?status=&provider=&since=")
    assert len(ID.findall(inbox.text)) == 1
