"""Property: no request to any console route, signed in and past the CSRF check, gets
a 5xx, whatever its path values, query string and body.

The routes are read from the mounted console (a page added later is fuzzed with no
change here). Path values include a real job's id so handlers get past their
lookups; bodies are url-encoded forms of the console's field names with hostile
values, raw bytes, or multipart bodies with broken envelopes. The app runs in
process with no background loops, so nothing is submitted anywhere.
``UPSCALE_FUZZ_EXAMPLES`` raises the number of requests (default 300 here).
"""

from __future__ import annotations

import asyncio
import os
import re
from urllib.parse import quote, urlencode

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import BASE, AppFactory
from tests.security.test_console_security import OWN, console_routes, signed_in
from tests.security.test_fuzz_routes import TEXT, loop  # noqa: F401  (its own event loop fixture)

EXAMPLES = int(os.environ.get("UPSCALE_FUZZ_EXAMPLES", "300"))
# Endless by design (/live), or ending the session the other requests need (/signout).
LEFT_OUT = {"/live", "/signout"}
FIELDS = [
    "token",
    "next",
    "provider",
    "operation",
    "scale",
    "options",
    "metadata",
    "prompt",
    "confirm_uncertain",
    "status",
    "since",
    "url",
    "types",
    "grace_s",
]
QUERY = ["state", "provider", "operation", "since", "until", "q", "after", "limit", "next"]
FORMS = st.dictionaries(st.sampled_from(FIELDS), TEXT, max_size=5)
CONTENT_TYPES = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "multipart/form-data; boundary=xyz",
        "application/json",
        "text/plain",
    ]
)


def test_no_console_request_is_a_server_error(
    app_factory: AppFactory,
    loop: asyncio.AbstractEventLoop,  # noqa: F811
) -> None:
    context = app_factory()
    app, _, api = loop.run_until_complete(context.__aenter__())
    browser = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
    try:
        made = loop.run_until_complete(
            api.post("/v1/jobs", json={"provider": "upsampler", "image": "https://e.test/a.png"})
        )
        job_id = made.json()["id"]
        csrf = loop.run_until_complete(signed_in(browser))
        routes = [(m, p) for m, p in console_routes(app) if p not in LEFT_OUT]
        assert len(routes) >= 10

        @given(
            route=st.sampled_from(routes),
            path_value=st.one_of(st.just(job_id), TEXT.filter(lambda t: t and "/" not in t)),
            query=st.dictionaries(st.sampled_from(QUERY), TEXT, max_size=4),
            form=FORMS,
            raw=st.one_of(st.none(), st.binary(max_size=80)),
            content_type=CONTENT_TYPES,
        )
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def request_is_not_a_server_error(
            route: tuple[str, str],
            path_value: str,
            query: dict[str, str],
            form: dict[str, str],
            raw: bytes | None,
            content_type: str,
        ) -> None:
            method, template = route
            path = "/console" + re.sub(r"\{[^}]+\}", quote(path_value, safe="") or "x", template)
            body = raw if raw is not None else urlencode({**form, "csrf": csrf}).encode()
            headers = {**OWN, "x-csrf-token": csrf, "content-type": content_type}
            answer = loop.run_until_complete(
                browser.request(method, path, params=query, content=body, headers=headers)
            )
            assert answer.status_code < 500, (method, path, query, body[:200], answer.text[:300])

        request_is_not_a_server_error()
    finally:
        loop.run_until_complete(browser.aclose())
        loop.run_until_complete(context.__aexit__(None, None, None))
