"""Signing in and out of the console in a real browser."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import sign_in
from tests.e2e.harness import Service
from tests.factories import make_png


def test_sign_in_see_the_overview_sign_out_and_be_refused(page: Page, service: Service) -> None:
    page.goto(f"{service.base}/console/jobs")
    expect(page).to_have_url(re.compile(r"/console/signin\?next=/console/jobs$"))

    page.fill("input[name=token]", "not-a-token")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("not one of this service's API tokens")

    sign_in(page, service)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator("#live-state")).to_have_text("live")  # the event stream is connected
    # The overview follows the event stream: a job submitted elsewhere shows up.
    page.evaluate("window.__notReloaded = true")
    expect(page.locator("#jobs-last-hour")).to_have_text("0")
    service.submit(make_png(8, 8))
    expect(page.locator("#jobs-last-hour")).to_have_text("1", timeout=30_000)
    assert page.evaluate("window.__notReloaded === true")
    cookie = next(c for c in page.context.cookies() if c["name"] == "upscale_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert "e2e-token" not in cookie["value"]

    # The cookie is not an API credential.
    answer = httpx.get(
        f"{service.base}/v1/jobs",
        cookies={"upscale_console": cookie["value"]},
        trust_env=False,
    )
    assert answer.status_code == 401

    page.click("text=Sign out")
    expect(page).to_have_url(re.compile(r"/console/signin$"))
    page.goto(f"{service.base}/console/")
    expect(page).to_have_url(re.compile(r"/console/signin\?next=/console/$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
