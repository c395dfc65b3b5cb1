"""The event feed in a real browser: events written while the page is open appear at
its top without a reload."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.e2e.harness import Service
from tests.factories import make_png


def test_the_event_feed_shows_new_events_live(console: Page, service: Service) -> None:
    console.click("header nav >> text=Events")
    expect(console.get_by_role("heading", name="Events")).to_be_visible()
    expect(console.locator("#live-state")).to_have_text("live")
    expect(console.locator("#event-feed")).to_contain_text("No event yet.")

    console.evaluate("window.notReloaded = true")  # gone if the page were loaded again
    job = service.submit(make_png(10, 10))

    feed = console.locator("#event-feed")
    expect(feed).to_contain_text("job.queued")
    expect(feed).to_contain_text("job.succeeded", timeout=30_000)
    expect(feed.locator("li").first).to_contain_text(job["id"])
    assert console.evaluate("window.notReloaded") is True
