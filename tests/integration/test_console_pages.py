"""The console's job and provider pages in process: the real app and store, no loops."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from orchestrator.domain.states import Event
from receiver.console.jobs import job_values
from receiver.console.pages import render_fragment
from schemas.jobs import JobState
from tests.conftest import BASE, AppFactory
from tests.factories import make_png
from tests.security.test_console_security import OWN, signed_in

JOB = {"provider": "upsampler", "image": "https://images.example.test/a.png"}
JOB_LINK = re.compile(r'<a class="mono" href="/console/jobs/(job_[0-9a-z]+)"')


@asynccontextmanager
async def console_of(
    app_factory: AppFactory, **env: str
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """The JSON API's client, and a browser-like client of the console (not signed in)."""
    async with (
        app_factory(**env) as (app, _, api),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as browser,
    ):
        yield api, browser


async def _jobs(browser: httpx.AsyncClient, query: str = "") -> tuple[list[str], str | None]:
    page = await browser.get(f"/console/jobs{query}")
    assert page.status_code == 200, page.text
    older = re.search(r'href="/console/jobs(\?[^"]*after=[^"]*)" rel="next"', page.text)
    return JOB_LINK.findall(page.text), older.group(1).replace("&amp;", "&") if older else None


async def test_the_jobs_list_filters_and_pages(app_factory: AppFactory) -> None:
    async with console_of(app_factory) as (api, b):
        made = []
        for i in range(5):
            answer = await api.post(
                "/v1/jobs",
                json={
                    "provider": "photio" if i == 2 else "upsampler",
                    "image": "https://images.example.test/a.png",
                    "metadata": {"order": 1000 + i},
                },
            )
            made.append(answer.json()["id"])
        await signed_in(b)
        first, older = await _jobs(b, "?limit=2")
        assert first == [made[4], made[3]] and older is not None
        second, older = await _jobs(b, older)
        assert second == [made[2], made[1]] and older is not None
        third, older = await _jobs(b, older)
        assert third == [made[0]] and older is None

        assert (await _jobs(b, "?provider=photio"))[0] == [made[2]]
        assert (await _jobs(b, "?q=1003"))[0] == [made[3]]
        assert (await _jobs(b, "?state=succeeded"))[0] == []
        assert len((await _jobs(b, "?since=1h&operation=upscale"))[0]) == 5
        assert (await _jobs(b, "?until=2000-01-01T00:00"))[0] == []
        # An id goes straight to the job's page.
        found = await b.get(f"/console/jobs?q={made[1]}")
        assert found.status_code == 303
        assert found.headers["location"] == f"/console/jobs/{made[1]}"
        # Hostile filters are a page saying what is wrong, never a 500.
        for bad in ("?since=forever", "?state=nope", "?until=yesterday", "?provider=x"):
            answer = await b.get(f"/console/jobs{bad}")
            assert answer.status_code == 400, bad
            assert "text/html" in answer.headers["content-type"]


async def test_a_job_page_its_images_and_cancel(app_factory: AppFactory) -> None:
    async with console_of(app_factory) as (api, b):
        csrf = await signed_in(b)
        png = make_png(12, 9)
        made = await b.post(
            "/console/jobs/new",
            data={"provider": "upsampler", "scale": "2", "csrf": csrf, "metadata": '{"a": 1}'},
            files={"image": ("in.png", png, "image/png")},
            headers=OWN,
        )
        assert made.status_code == 303
        job_id = made.headers["location"].split("/")[-1].split("?")[0]
        page = await b.get(f"/console/jobs/{job_id}")
        assert page.status_code == 200
        assert 'id="job-state">queued<' in page.text
        assert f'src="/console/jobs/{job_id}/input"' in page.text
        image = await b.get(f"/console/jobs/{job_id}/input")
        assert image.status_code == 200 and image.content == png
        assert (await b.get(f"/console/jobs/{job_id}/result")).status_code == 404
        assert (await b.get("/console/jobs/job_nope")).status_code == 404

        cancelled = await b.post(f"/console/jobs/{job_id}/cancel", data={"csrf": csrf}, headers=OWN)
        assert cancelled.status_code == 303
        assert (await api.get(f"/v1/jobs/{job_id}")).json()["state"] == "cancelled"
        page = await b.get(cancelled.headers["location"])
        assert "The job was cancelled." in page.text and "Cancel job" not in page.text

        # A refused submit says why, and makes no job.
        refused = await b.post(
            "/console/jobs/new",
            data={"provider": "nope", "csrf": csrf},
            files={"image": ("in.png", png, "image/png")},
            headers=OWN,
        )
        assert refused.status_code == 400 and "provider" in refused.text
        assert len((await api.get("/v1/jobs")).json()["jobs"]) == 1


async def test_a_replace_job_from_the_form(app_factory: AppFactory) -> None:
    async with console_of(app_factory) as (api, b):
        csrf = await signed_in(b)
        made = await b.post(
            "/console/jobs/new",
            data={"provider": "local", "operation": "replace", "prompt": "a cat", "csrf": csrf},
            files={
                "image": ("in.png", make_png(10, 10), "image/png"),
                "mask": ("mask.png", make_png(10, 10, (255, 255, 255)), "image/png"),
            },
            headers=OWN,
        )
        assert made.status_code == 303, made.text
        job = (await api.get("/v1/jobs")).json()["jobs"][0]
        assert job["operation"] == "replace" and job["prompt"] == "a cat"
        page = await b.get(f"/console/jobs/{job['id']}")
        assert f'src="/console/jobs/{job["id"]}/mask"' in page.text


async def test_the_providers_page_shows_modes_operations_and_budgets(
    app_factory: AppFactory,
) -> None:
    async with console_of(app_factory) as (_api, b):
        await signed_in(b)
        page = (await b.get("/console/providers")).text
        row = re.search(r'<tr data-provider="upsampler">(.*?)</tr>', page, re.S)
        assert row is not None
        assert "sandbox" in row.group(1) and "upscale" in row.group(1)
        assert "submit / min" in row.group(1) and "0 / 90, 90 left" in row.group(1)
        assert "healthy" in row.group(1)
        assert "No named route" in page


async def test_the_providers_page_lists_the_named_routes(app_factory: AppFactory) -> None:
    async with console_of(app_factory, UPSCALE_ROUTES="cheap=photio,local") as (_api, b):
        await signed_in(b)
        page = (await b.get("/console/providers")).text
        assert "<th>cheap</th><td>photio → local</td>" in page


async def test_the_console_can_be_turned_off(app_factory: AppFactory) -> None:
    async with console_of(app_factory, UPSCALE_CONSOLE="off") as (_api, b):
        assert (await b.get("/console/")).status_code == 404
        assert (await b.get("/console/signin")).status_code == 404


async def test_an_uncertain_job_is_retried_only_when_confirmed(app_factory: AppFactory) -> None:
    async with app_factory() as (app, runtime, api):
        job_id = (await api.post("/v1/jobs", json=JOB)).json()["id"]
        job = await runtime.store.get_job(job_id)
        assert job is not None
        now = runtime.orchestrator.clock.now()
        job = await runtime.store.apply_transition(
            job, Event.SUBMIT_STARTED, JobState.SUBMITTING, cause="submit", now=now
        )
        assert job is not None
        await runtime.store.apply_transition(
            job, Event.SUBMIT_UNCERTAIN, JobState.UNCERTAIN, cause="submit", now=now
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as b:
            csrf = await signed_in(b)
            page = await b.get(f"/console/jobs/{job_id}/retry")
            assert re.search(r"may be\s+paid for twice", page.text)
            refused = await b.post(
                f"/console/jobs/{job_id}/retry", data={"csrf": csrf}, headers=OWN
            )
            assert refused.status_code == 400
            assert len((await api.get("/v1/jobs")).json()["jobs"]) == 1
            done = await b.post(
                f"/console/jobs/{job_id}/retry",
                data={"csrf": csrf, "confirm_uncertain": "yes"},
                headers=OWN,
            )
            assert done.status_code == 303
            jobs = (await api.get("/v1/jobs")).json()["jobs"]
            assert len(jobs) == 2 and jobs[0]["retry_of"] == job_id
            assert done.headers["location"] == f"/console/jobs/{jobs[0]['id']}?note=retried"


async def test_a_jobs_attempts_are_shown_from_its_json(app_factory: AppFactory) -> None:
    async with app_factory() as (_, runtime, api):
        job_id = (await api.post("/v1/jobs", json=JOB)).json()["id"]
        job = await runtime.store.get_job(job_id)
        assert job is not None
        values = await job_values(runtime, job, "csrf")
        # The job's JSON lists its attempts (routing): the current one, here.
        assert [(a["number"], a["provider"]) for a in values["attempts"]] == [(1, "upsampler")]
        html = render_fragment("job_body.html", values).body.decode()
        assert "<h2>Attempts</h2>" in html and "<th>provider_job_id</th>" in html
        # Whatever the attempts hold is shown as text: nested values as JSON, None as -.
        values["attempts"] = [
            {"provider": "upsampler", "failure": {"reason": "provider_failed"}, "cost": None},
        ]
        values["attempt_columns"] = ["provider", "failure", "cost"]
        html = render_fragment("job_body.html", values).body.decode()
        assert '{"reason": "provider_failed"}' in html and '<td class="mono">-</td>' in html
        values["attempts"], values["attempt_columns"] = [], []
        assert "<h2>Attempts</h2>" not in render_fragment("job_body.html", values).body.decode()


async def test_a_callback_injected_from_a_jobs_page_lands_in_the_inbox(
    app_factory: AppFactory,
) -> None:
    async with console_of(app_factory) as (api, b):
        job_id = (await api.post("/v1/jobs", json=JOB)).json()["id"]
        csrf = await signed_in(b)
        page = await b.get(f"/console/jobs/{job_id}")
        assert f'action="/console/jobs/{job_id}/inject"' in page.text
        empty = await b.post(
            f"/console/jobs/{job_id}/inject", data={"csrf": csrf, "body": " "}, headers=OWN
        )
        assert empty.status_code == 400
        body = '{"status": "done", "jobId": "not-ours"}'
        injected = await b.post(
            f"/console/jobs/{job_id}/inject", data={"csrf": csrf, "body": body}, headers=OWN
        )
        assert injected.status_code == 303
        delivery_id = injected.headers["location"].removeprefix("/console/inbox/")
        stored = (await api.get(f"/v1/deliveries/{delivery_id}")).json()
        assert stored["source"] == "injected" and stored["body"] == body
        assert stored["provider"] == "upsampler"


async def test_reconciling_stuck_jobs_with_none_stuck_says_so(app_factory: AppFactory) -> None:
    async with console_of(app_factory) as (_api, b):
        csrf = await signed_in(b)
        page = await b.post("/console/reconcile/stuck/preview", data={"csrf": csrf}, headers=OWN)
        assert page.status_code == 200 and "No stuck job." in page.text
        assert "Apply to" not in page.text


async def test_a_routed_job_from_the_form(app_factory: AppFactory) -> None:
    async with console_of(app_factory) as (api, b):
        csrf = await signed_in(b)
        form = (await b.get("/console/jobs/new")).text
        assert 'id="route-form"' in form
        made = await b.post(
            "/console/jobs/new",
            data={"providers": "photio,upsampler", "scale": "2", "max_cost": "3", "csrf": csrf},
            files={"image": ("in.png", make_png(10, 10), "image/png")},
            headers=OWN,
        )
        assert made.status_code == 303, made.text
        job = (await api.get("/v1/jobs")).json()["jobs"][0]
        assert job["route"]["providers"] == ["photio", "upsampler"] and job["max_cost"] == 3
