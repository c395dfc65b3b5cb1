"""Operating jobs from the console in a real browser: submit and watch, reconcile a
stuck job, retry an uncertain one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.harness import Sandbox, Service
from tests.factories import make_png

LIVE_S = 30_000  # ms: how long a live update may take to show


def _mark_page(page: Page) -> None:
    """A mark that a reload would wipe out: checked to prove a page updated in place."""
    page.evaluate("window.__notReloaded = true")


def _not_reloaded(page: Page) -> bool:
    return bool(page.evaluate("window.__notReloaded === true"))


def test_submit_a_job_and_watch_it_succeed_without_reloading(
    console: Page, service: Service, tmp_path: Path
) -> None:
    page = console
    image = tmp_path / "photo.png"
    image.write_bytes(make_png(40, 30, (30, 120, 200)))

    # The jobs list, left open in a second tab, follows along too.
    listing = page.context.new_page()
    listing.goto(f"{service.base}/console/jobs")
    expect(listing.locator("#live-state")).to_have_text("live")
    _mark_page(listing)

    page.click("nav >> text=Jobs")
    page.click("text=Submit a job")
    form = page.locator("#upscale-form")
    form.locator("input[name=image]").set_input_files(str(image))
    form.locator("select[name=provider]").select_option("upsampler")
    form.locator("input[name=scale]").fill("2")
    form.locator("input[name=metadata]").fill('{"order": 4242}')
    form.locator("button[type=submit]").click()

    expect(page).to_have_url(re.compile(r"/console/jobs/job_[0-9a-z]+\?note=submitted$"))
    job_id = page.url.rsplit("/", 1)[-1].split("?")[0]
    expect(page.locator("#live-state")).to_have_text("live")
    _mark_page(page)
    expect(page.locator("#job-state")).to_have_text("succeeded", timeout=LIVE_S)
    assert _not_reloaded(page)

    # Timeline, and the result beside the input, both served by the service itself.
    timeline = page.locator("table.timeline tbody tr")
    expect(timeline.last).to_contain_text("succeeded")
    # The callback that moved it links to its delivery in the inbox.
    expect(page.locator("table.timeline a[href^='/console/inbox/dlv_']")).to_have_count(1)
    states = [row.inner_text() for row in timeline.all()]
    assert any("submitted" in s for s in states) and any("fetching" in s for s in states)
    result = page.locator("#result-image")
    expect(result).to_be_visible()
    page.wait_for_function(
        "document.getElementById('result-image').complete"
        " && document.getElementById('result-image').naturalWidth > 0"
    )
    assert page.evaluate("document.getElementById('result-image').naturalWidth") == 80
    assert result.get_attribute("src") == f"/console/jobs/{job_id}/result"
    expect(page.locator("figcaption").last).to_contain_text("80\u00d760")
    assert service.job(job_id)["metadata"] == {"order": 4242}

    # The list saw the job arrive and finish without a reload.
    row = listing.locator(f"tr[data-job='{job_id}']")
    expect(row).to_contain_text("succeeded", timeout=LIVE_S)
    assert _not_reloaded(listing)

    # Found again by its metadata.
    page.goto(f"{service.base}/console/jobs?q=4242")
    expect(page.locator(f"tr[data-job='{job_id}']")).to_be_visible()
    listing.close()


@pytest.fixture
def service_env(request: pytest.FixtureRequest) -> dict[str, str]:
    marker = request.node.get_closest_marker("service_env")
    return dict(marker.kwargs) if marker else {}


@pytest.mark.service_env(UPSCALE_POLL_GRACE_S="3600", UPSCALE_STUCK_AFTER_S="0")
def test_reconcile_a_stuck_job_from_its_page(
    console: Page, service: Service, sandbox: Sandbox
) -> None:
    page = console
    sandbox.faults(drop_callback=1)  # the callback never comes; polling is an hour away
    job_id = service.submit(make_png(20, 20))["id"]
    service.wait([job_id], done=lambda j: j["state"] == "submitted")

    page.goto(f"{service.base}/console/")
    stuck = page.locator("#stuck")
    expect(stuck.locator(f"a[href='/console/jobs/{job_id}']")).to_be_visible(timeout=LIVE_S)
    stuck.locator(f"a[href='/console/jobs/{job_id}']").click()
    expect(page.locator("#job-state")).to_have_text("submitted")

    page.click("text=Reconcile…")
    expect(page.locator("#dry-run")).to_contain_text("Would go submitted → fetching")
    history = service.history(job_id)
    assert service.job(job_id)["state"] == "submitted"  # a dry run changes nothing
    assert [h["to"] for h in history][-1] == "submitted"

    page.click("text=Apply: submitted → fetching")
    expect(page.locator("p.flash")).to_contain_text("Reconciled")
    expect(page.locator("#job-state")).to_have_text("succeeded", timeout=LIVE_S)
    causes = [h["cause"] for h in service.history(job_id) if h["to"] == "fetching"]
    assert causes == ["reconcile"]


@pytest.mark.service_env(UPSCALE_POLL_GRACE_S="3600", UPSCALE_STUCK_AFTER_S="0")
def test_reconcile_every_stuck_job_from_the_overview(
    console: Page, service: Service, sandbox: Sandbox
) -> None:
    page = console
    sandbox.faults(drop_callback=1)
    ids = [service.submit(make_png(10 + i, 10))["id"] for i in range(2)]
    service.wait(ids, done=lambda j: j["state"] == "submitted")

    page.goto(f"{service.base}/console/")
    expect(page.locator("#stuck-count")).to_have_text("2", timeout=LIVE_S)
    page.click("text=Reconcile stuck jobs…")
    rows = page.locator("#reconcile-results tbody tr")
    expect(rows).to_have_count(2)
    for job_id in ids:
        row = page.locator(f"#reconcile-results tr[data-job='{job_id}']")
        expect(row).to_contain_text("submitted → fetching")
    assert {service.job(i)["state"] for i in ids} == {"submitted"}  # the dry run changed nothing

    page.click("text=Apply to 2 jobs")
    expect(page.get_by_role("heading", name="Reconcile stuck jobs")).to_be_visible()
    expect(page.locator("#reconcile-results thead")).to_contain_text("went")
    expect(rows.first).to_contain_text("submitted → fetching")
    expect(page.locator("text=Apply to")).to_have_count(0)
    done = service.wait(ids)
    assert {j["state"] for j in done.values()} == {"succeeded"}
    page.goto(f"{service.base}/console/")
    expect(page.locator("#stuck-count")).to_have_text("0", timeout=LIVE_S)


@pytest.mark.service_env(UPSCALE_SUBMIT_TIMEOUT_S="1")
def test_retry_an_uncertain_job_through_the_confirmation(
    console: Page, service: Service, sandbox: Sandbox
) -> None:
    page = console
    sandbox.faults(submit_timeout=1, submit_timeout_s=4, drop_callback=1)
    job_id = service.submit(make_png(18, 12))["id"]
    service.wait([job_id], done=lambda j: j["state"] == "uncertain")
    sandbox.faults()  # the provider is well again

    page.goto(f"{service.base}/console/jobs?state=uncertain")
    page.click(f"a[href='/console/jobs/{job_id}']")
    expect(page.locator("#job-state")).to_have_text("uncertain")
    page.click("text=Retry…")
    expect(page.get_by_role("alert")).to_contain_text("may be paid for twice")

    page.click("text=Retry the job")  # without ticking the box: refused, nothing made
    expect(page.locator("p.error")).to_contain_text("confirm")
    assert len(service.client.get("/v1/jobs").json()["jobs"]) == 1

    page.check("input[name=confirm_uncertain]")
    page.click("text=Retry the job")
    expect(page.locator("p.flash")).to_contain_text("A new job was created")
    new_id = page.url.rsplit("/", 1)[-1].split("?")[0]
    assert new_id != job_id
    expect(page.locator(f"a[href='/console/jobs/{job_id}']")).to_be_visible()  # retry of
    expect(page.locator("#job-state")).to_have_text("succeeded", timeout=LIVE_S)
    assert service.job(job_id)["state"] == "uncertain"
