"""The console's gate, on every mounted console route (a page added later is covered
by the same enumeration): no session, no page; no CSRF token or a foreign origin,
no change; a strict CSP everywhere; nothing loaded from outside the service."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from orchestrator.service.runtime import Runtime
from tests.conftest import API_TOKEN, BASE, running_app
from tests.factories import make_png

OWN = {"origin": BASE}
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def console_routes(app: Starlette) -> list[tuple[str, str]]:
    """(method, path under /console) of every console route but the static files."""
    mount = next(r for r in app.routes if isinstance(r, Mount) and r.path == "/console")
    found: list[tuple[str, str]] = []
    for route in mount.routes:
        if isinstance(route, Route):
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    found.append((method, route.path))
    return found


def concrete(path: str, value: str = "job_nonexistent") -> str:
    return re.sub(r"\{[^}]+\}", value, path)


async def signed_in(client: httpx.AsyncClient) -> str:
    """Sign the client in; the session's CSRF token."""
    answer = await client.post(
        "/console/signin", data={"token": API_TOKEN, "next": "/console/"}, headers=OWN
    )
    assert answer.status_code == 303, answer.text
    page = await client.get("/console/")
    assert page.status_code == 200
    match = CSRF_FIELD.search(page.text)
    assert match is not None
    return match.group(1)


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[tuple[Starlette, Runtime, httpx.AsyncClient]]:
    async with running_app(tmp_path) as (app, runtime, _api):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as browser:
            yield app, runtime, browser


async def test_every_console_route_refuses_a_request_without_a_session(
    console: tuple[Starlette, Runtime, httpx.AsyncClient],
) -> None:
    app, _, client = console
    routes = console_routes(app)
    assert len(routes) >= 8  # the enumeration found the pages
    for method, path in routes:
        if path == "/signin":
            continue
        answer = await client.request(method, "/console" + concrete(path), headers=OWN)
        assert answer.status_code == 303, (method, path, answer.status_code)
        assert answer.headers["location"].startswith("/console/signin"), (method, path)
        assert "content-security-policy" in answer.headers


async def test_a_forged_or_stale_cookie_is_no_session(
    console: tuple[Starlette, Runtime, httpx.AsyncClient],
) -> None:
    _, _, client = console
    await signed_in(client)
    cookie = client.cookies["upscale_console"]
    for forged in (cookie[:-2] + "xx", cookie.split(".")[0], "", "a" * 5000):
        client.cookies.set("upscale_console", forged, path="/console")
        answer = await client.get("/console/")
        assert answer.status_code == 303, forged[:20]


async def test_removing_a_token_ends_its_sessions(tmp_path: Path) -> None:
    env = {"UPSCALE_API_TOKENS": f"{API_TOKEN},other-token"}
    async with running_app(tmp_path, **env) as (app, _, _api):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            await signed_in(client)
            cookie = client.cookies["upscale_console"]
    async with running_app(tmp_path, UPSCALE_API_TOKENS="other-token") as (app, _, _api):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            client.cookies.set("upscale_console", cookie, path="/console")
            answer = await client.get("/console/")
            assert answer.status_code == 303


async def test_the_session_cookie_is_httponly_strict_and_holds_no_token(
    console: tuple[Starlette, Runtime, httpx.AsyncClient],
) -> None:
    _, _, client = console
    answer = await client.post(
        "/console/signin", data={"token": API_TOKEN, "next": "/console/"}, headers=OWN
    )
    header = answer.headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/console" in header
    assert "Secure" not in header  # the public URL is http here
    assert API_TOKEN not in header


async def test_the_cookie_is_secure_when_the_public_url_is_https(tmp_path: Path) -> None:
    async with running_app(tmp_path, UPSCALE_PUBLIC_URL="https://upscale.example.com") as (
        app,
        _,
        _api,
    ):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            answer = await client.post(
                "/console/signin",
                data={"token": API_TOKEN},
                headers={"origin": "https://upscale.example.com"},
            )
            assert answer.status_code == 303
            assert "; Secure" in answer.headers["set-cookie"]


async def test_the_session_cookie_never_authorizes_the_json_api(
    console: tuple[Starlette, Runtime, httpx.AsyncClient],
) -> None:
    _, _, client = console
    await signed_in(client)
    cookie = client.cookies["upscale_console"]
    answer = await client.get("/v1/jobs", headers={"cookie": f"upscale_console={cookie}"})
    assert answer.status_code == 401


async def _state(runtime: Runtime) -> tuple[object, ...]:
    store = runtime.store
    jobs = [(j.id, j.state, j.version) for j in await store.list_jobs(limit=1000)]
    subscriptions = [
        (s.id, s.disabled_at, len(s.secrets)) for s in await store.list_subscriptions()
    ]
    deliveries = [(d.id, d.status, d.replays) for d in await store.list_deliveries(limit=1000)]
    return jobs, subscriptions, deliveries, await store.last_event_seq()


async def test_a_post_without_the_csrf_token_or_from_another_origin_changes_nothing(
    console: tuple[Starlette, Runtime, httpx.AsyncClient],
) -> None:
    app, runtime, client = console
    csrf = await signed_in(client)
    job = await client.post(
        "/console/jobs/new",
        data={"provider": "upsampler", "scale": "2", "csrf": csrf},
        files={"image": ("in.png", make_png(12, 9), "image/png")},
        headers=OWN,
    )
    assert job.status_code == 303, job.text
    job_id = job.headers["location"].rsplit("/", 1)[-1]
    before = await _state(runtime)
    posts = [path for method, path in console_routes(app) if method == "POST"]
    assert "/signout" in posts and len(posts) >= 4
    foreign = {"origin": "https://evil.example"}
    wrong = csrf[:-1] + ("A" if csrf[-1] != "A" else "B")
    for path in posts:
        if path == "/signin":
            continue
        url = "/console" + concrete(path, job_id)
        attempts = [
            ("no token", {"data": {"confirm": "1"}, "headers": OWN}),
            ("wrong token", {"data": {"csrf": wrong}, "headers": OWN}),
            ("other origin", {"data": {"csrf": csrf}, "headers": foreign}),
            ("other referer", {"data": {"csrf": csrf}, "headers": {"referer": "https://e.x/"}}),
            ("no origin", {"data": {"csrf": csrf}, "headers": {}}),
            ("header token, other origin", {"headers": {**foreign, "x-csrf-token": csrf}}),
            (
                "multipart, no token",
                {"files": {"image": ("a.png", make_png(4, 4), "image/png")}, "headers": OWN},
            ),
        ]
        for name, kwargs in attempts:
            answer = await client.post(url, **kwargs)  # type: ignore[arg-type]
            assert answer.status_code == 403, (path, name, answer.status_code)
            assert await _state(runtime) == before, (path, name)
    # Still signed in: a refused post does not sign out either.
    assert (await client.get("/console/")).status_code == 200


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self.style_attributes = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href", "action", "formaction", "data-live", "data-stream"):
            if values.get(name):
                self.urls.append(str(values[name]))
        if "style" in values:
            self.style_attributes += 1
        if any(name.startswith("on") for name in values):
            self.inline_scripts += 1
        self._in_script = tag == "script"
        if tag == "script" and not values.get("src"):
            self.inline_scripts += 1


def _same_origin(url: str) -> bool:
    if url.startswith("#") or (url.startswith("/") and not url.startswith("//")):
        return True
    return url.startswith(BASE + "/")


async def test_every_page_has_the_csp_and_loads_nothing_from_outside(
    console: tuple[Starlette, Runtime, httpx.AsyncClient],
) -> None:
    app, _, client = console
    csrf = await signed_in(client)
    job = await client.post(
        "/console/jobs/new",
        data={"provider": "upsampler", "scale": "2", "csrf": csrf},
        files={"image": ("in.png", make_png(12, 9), "image/png")},
        headers=OWN,
    )
    job_id = job.headers["location"].rsplit("/", 1)[-1]
    pages = [
        concrete(path, job_id)
        for method, path in console_routes(app)
        if method == "GET" and path not in ("/live",)
    ]
    checked = 0
    for path in pages:
        answer = await client.get("/console" + path)
        csp = answer.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp and "base-uri 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "same-origin"
        if not answer.headers.get("content-type", "").startswith("text/html"):
            continue
        links = _Links()
        links.feed(answer.text)
        assert [u for u in links.urls if not _same_origin(u)] == [], path
        assert links.inline_scripts == 0 and links.style_attributes == 0, path
        checked += 1
    assert checked >= 5


async def test_too_many_failed_sign_ins_make_the_address_wait(
    console: tuple[Starlette, Runtime, httpx.AsyncClient],
) -> None:
    _, _, client = console
    for _ in range(10):
        wrong = await client.post("/console/signin", data={"token": "guess"}, headers=OWN)
        assert wrong.status_code == 401
    refused = await client.post("/console/signin", data={"token": API_TOKEN}, headers=OWN)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert "set-cookie" not in refused.headers
    assert "Too many failed sign-ins" in refused.text
