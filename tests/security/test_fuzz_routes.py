"""Property: no request to any route gets a 5xx, whatever its body and query string.

Hypothesis draws a route of the app (every method of every path, found from the
app itself, so a new route is fuzzed without touching this file), path values
(real ids of a job, a subscription and an event among them, so handlers get past
their lookups), a query string of the parameter names the API uses with hostile
values, and a body: JSON objects of the API's field names with values of any
JSON type (deeply nested ones too), any JSON, or raw bytes. The app runs in
process with no background loops, so nothing generated is ever submitted,
fetched or delivered.

``UPSCALE_FUZZ_EXAMPLES`` raises the number of requests (default 400).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from tests.conftest import AppFactory

EXAMPLES = int(os.environ.get("UPSCALE_FUZZ_EXAMPLES", "400"))
# Endless by design: a valid request streams until the client leaves.
ENDLESS = {"/v1/events/stream"}

FIELDS = [
    "provider",
    "image",
    "scale",
    "options",
    "metadata",
    "webhook_url",
    "url",
    "types",
    "grace_s",
    "subscription_id",
    "status",
    "since",
    "state",
    "stuck",
    "dry_run",
    "all",
    "confirm_uncertain",
]
QUERY = ["state", "provider", "limit", "after", "since", "status", "job_id", "type", "dry_run"]

HOSTILE_TEXT = st.sampled_from(
    [
        "",
        " ",
        "99999999999d",
        "1e308",
        "-1",
        "9" * 400,
        "NaN",
        "2h\n",
        "evt_²",
        "evt_99999999999999999999",
        "dead",
        "submitted",
        "upsampler",
        "job.succeeded,nope",
        "http://[::1",
        "https://hooks.example.test/a",
        "data:image/png;base64,AAAA",
        "\x00",
        "%ff",
    ]
)
TEXT = st.one_of(HOSTILE_TEXT, st.text(max_size=40))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 10**400]),
    TEXT,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


RAW_BODIES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", b"   ", b"null", b"[]", b"NaN", b"{", _nested(2000).encode()]),
    st.integers(min_value=60, max_value=3000).map(
        lambda d: f'{{"metadata": {_nested(d)}}}'.encode()
    ),
)
OBJECTS = st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=5)
BODIES = st.one_of(
    OBJECTS.map(lambda o: json.dumps(o).encode()),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    RAW_BODIES,
)
QUERIES = st.dictionaries(st.sampled_from(QUERY), TEXT, max_size=4)


def _routes(app: Any) -> list[tuple[str, str]]:
    found = []
    for route in app.routes:
        if isinstance(route, Route) and route.path not in ENDLESS:
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    found.append((route.path, method))
    return found


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop of this test's own: hypothesis drives each example synchronously."""
    running = asyncio.new_event_loop()
    try:
        yield running
    finally:
        running.close()


def test_no_request_to_any_route_is_a_server_error(
    app_factory: AppFactory, loop: asyncio.AbstractEventLoop
) -> None:
    context = app_factory()
    app, _, client = loop.run_until_complete(context.__aenter__())
    try:
        ids = loop.run_until_complete(_real_ids(client))
        routes = _routes(app)
        assert len(routes) > 30, routes

        @given(
            route=st.sampled_from(routes),
            path_value=st.one_of(st.sampled_from(ids), TEXT.filter(lambda t: t and "/" not in t)),
            query=QUERIES,
            body=BODIES,
            json_type=st.booleans(),
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
            body: bytes,
            json_type: bool,
        ) -> None:
            template, method = route
            path = _fill(template, path_value)
            headers = {"content-type": "application/json"} if json_type else {}
            answer = loop.run_until_complete(
                client.request(method, path, params=query, content=body, headers=headers)
            )
            assert answer.status_code < 500, (method, path, query, body[:200], answer.text[:300])
            if answer.status_code >= 400 and not path.startswith("/inputs/"):
                assert "error" in answer.json(), answer.text[:300]

        request_is_not_a_server_error()
    finally:
        loop.run_until_complete(context.__aexit__(None, None, None))


def _fill(template: str, value: str) -> str:
    parts = []
    for part in template.split("/"):
        if part.startswith("{") and part.endswith("}"):
            if part == "{provider}" and value in ("fotor", "upsampler", "photio", "artnex"):
                value = "nope"  # a real provider's balance would be a call to the network
            parts.append(quote(value, safe="") or "x")
        else:
            parts.append(part)
    return "/".join(parts)


async def _real_ids(client: httpx.AsyncClient) -> list[str]:
    job = await client.post(
        "/v1/jobs", json={"provider": "upsampler", "image": "https://images.example.test/a.png"}
    )
    sub = await client.post("/v1/subscriptions", json={"url": "https://hooks.example.test/a"})
    assert job.status_code == 202 and sub.status_code == 201
    return [job.json()["id"], sub.json()["id"], "evt_1"]
