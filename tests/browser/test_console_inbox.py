"""The inbox in a real browser: find a dead delivery, open it, replay it; then replay
every dead one since a time, the count shown before anything is replayed."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.e2e.harness import Service


def _dead_delivery(service: Service, body: bytes) -> str:
    answer = service.client.post("/v1/inject/upsampler", content=body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "dead"
    return str(answer.json()["delivery"])


def test_find_a_dead_delivery_open_it_and_replay_it(console: Page, service: Service) -> None:
    delivery_id = _dead_delivery(service, b'{"task": "<img src=x onerror=alert(1)>", "state"')

    console.click("header nav >> text=Inbox")
    console.locator("form.filters").first.locator("select[name=status]").select_option("dead")
    console.locator("form.filters").first.locator("button[type=submit]").click()
    row = console.locator(f"tr[data-delivery='{delivery_id}']")
    expect(row).to_contain_text("dead")
    row.locator(f"a[href$='/inbox/{delivery_id}']").click()

    expect(console.locator("#delivery-status")).to_have_text("dead")
    # The hostile body is shown as text, not run: no image element was made of it.
    expect(console.locator("#delivery-body")).to_contain_text("<img src=x onerror=alert(1)>")
    assert console.locator("#delivery-body img").count() == 0
    expect(console.locator("#replays")).to_have_text("0")

    console.get_by_role("button", name="Replay").click()
    expect(console.locator("#replayed")).to_have_text("Replayed: now dead.")
    expect(console.locator("#replays")).to_have_text("1")


def test_replay_every_dead_delivery_since_a_time_after_seeing_how_many(
    console: Page, service: Service
) -> None:
    made = [_dead_delivery(service, b"garbage %d" % n) for n in range(3)]

    console.goto(f"{service.base}/console/inbox")
    console.get_by_role("button", name="Count them…").click()
    expect(console.locator("#replay-count")).to_contain_text("3 dead deliveries")
    for delivery_id in made:  # counted, not replayed
        assert service.client.get(f"/v1/deliveries/{delivery_id}").json()["replays"] == 0

    console.get_by_role("button", name="Replay 3").click()
    expect(console.get_by_role("heading", name="Replayed 3 dead deliveries")).to_be_visible()
    expect(console.locator("#replay-outcome")).to_contain_text("3 dead")
    for delivery_id in made:
        assert service.client.get(f"/v1/deliveries/{delivery_id}").json()["replays"] == 1
