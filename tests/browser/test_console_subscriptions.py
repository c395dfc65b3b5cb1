"""Subscriptions in a real browser: add one pointing at a receiver that answers 500,
watch its failing attempts, rotate its secret (shown once)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.harness import Service
from tests.e2e.test_events_e2e import Consumer
from tests.factories import make_png


@pytest.fixture
def service_env() -> dict[str, str]:
    # The receiver is on 127.0.0.1, which the outbound guard refuses unless allowed.
    return {
        "UPSCALE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
        "UPSCALE_WEBHOOK_RETRY_SCHEDULE_S": ",".join(["0.3"] * 20),
    }


@pytest.fixture
def failing_receiver() -> Iterator[Consumer]:
    receiver = Consumer()
    receiver.status = 500
    try:
        yield receiver
    finally:
        receiver.close()


def test_add_a_subscription_see_its_failing_attempts_and_rotate_its_secret(
    console: Page, service: Service, failing_receiver: Consumer
) -> None:
    console.click("header nav >> text=Subscriptions")
    console.fill("input[name=url]", failing_receiver.url)
    console.get_by_role("button", name="Add").click()
    expect(console.get_by_role("heading", name="Subscription added")).to_be_visible()
    first_secret = console.locator("#new-secret").inner_text().strip()
    assert first_secret.startswith("whsec_")

    console.get_by_role("link", name="Done: to the subscription").click()
    expect(console.locator("#subscription-state")).to_be_visible()
    assert first_secret not in console.content()

    service.submit(make_png(12, 12))  # its events go to the receiver, which answers 500
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        console.reload()
        if console.locator(".attempt-status", has_text="500").count() >= 2:
            break
        time.sleep(0.5)
    expect(console.locator(".attempt-status", has_text="500").first).to_be_visible()
    expect(console.locator("#subscription-state")).to_have_text("failing")
    # Each attempt with its answer and duration (a later event waits for the first).
    failed = console.locator("ol.attempts li", has_text="500")
    assert failed.count() >= 2
    expect(failed.first).to_contain_text(" ms")

    console.get_by_role("button", name="Rotate the secret").click()
    expect(console.get_by_role("heading", name="Secret rotated")).to_be_visible()
    second_secret = console.locator("#new-secret").inner_text().strip()
    assert second_secret.startswith("whsec_") and second_secret != first_secret

    console.get_by_role("link", name="Done: to the subscription").click()
    expect(console.locator("#secrets")).to_contain_text("previous, signs until")
    console.reload()
    page = console.content()
    assert second_secret not in page and first_secret not in page
