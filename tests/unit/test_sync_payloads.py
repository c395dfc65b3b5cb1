"""Photio and Artnex answers: arbitrary input gives an outcome or one of our errors.

Whatever bytes, JSON or status code come back, the classifiers return an
``Accepted`` carrying a usable SUCCEEDED update or raise a ``ProviderError``;
the schema parsers raise nothing but ``RejectedPayload``.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from orchestrator.providers import artnex, photio
from orchestrator.providers.base import Accepted
from schemas.artnex import parse_artnex_answer
from schemas.errors import ProviderError, ProviderRejected, ProviderThrottled, RejectedPayload
from schemas.jobs import UpdateStatus
from schemas.photio import decode_image_body, parse_photio_answer

PROPERTY = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buf, format="PNG")
    return buf.getvalue()


B64 = base64.b64encode(_png()).decode()

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
status_codes = st.sampled_from(
    [200, 201, 204, 400, 401, 402, 403, 404, 408, 413, 422, 429, 500, 502, 503, 504]
) | st.integers(min_value=100, max_value=599)
headers = st.fixed_dictionaries(
    {}, optional={"Retry-After": st.text(max_size=40) | st.integers(0, 10**9).map(str)}
)
photio_like = st.fixed_dictionaries(
    {},
    optional={
        "status_code": st.sampled_from([200, 401, 429, 500, "200"]) | json_values,
        "body": st.sampled_from([B64, "data:image/png;base64," + B64, "", "!!"])
        | st.text(max_size=50)
        | json_values,
        "message": json_values,
    },
)
artnex_like = st.fixed_dictionaries(
    {},
    optional={
        "success": st.booleans() | json_values,
        "image_url": st.just("https://cdn/x.png") | json_values,
        "request_id": st.text(max_size=20) | json_values,
        "credits_used": st.integers() | st.floats() | json_values,
        "error": st.sampled_from([*sorted(artnex.ERROR_REASONS), "rate_limit_exceeded"])
        | json_values,
        "message": json_values,
    },
)


def check(accepted: Accepted | None, provider: str) -> None:
    if accepted is None:
        return
    assert isinstance(accepted.provider_job_id, str) and accepted.provider_job_id
    update = accepted.update
    assert update is not None
    assert update.status is UpdateStatus.SUCCEEDED
    assert update.provider == provider
    assert update.provider_job_id == accepted.provider_job_id
    if provider == "photio":
        assert update.result_bytes
    else:
        assert isinstance(update.result_url, str)
        assert update.result_url.lower().startswith(("http://", "https://"))
    if accepted.cost is not None:
        assert accepted.cost >= 0


def run_photio(code: int, head: dict[str, str], body: bytes) -> None:
    try:
        accepted: Accepted | None = photio.classify_submit("job_1", code, head, body)
    except ProviderError as exc:
        assert exc.message
        if isinstance(exc, ProviderRejected):
            assert exc.reason
        if isinstance(exc, ProviderThrottled):
            assert 0 <= exc.retry_after_s <= 3600
        accepted = None
    check(accepted, "photio")


def run_artnex(code: int, head: dict[str, str], body: bytes) -> None:
    try:
        accepted: Accepted | None = artnex.classify_submit("job_1", code, head, body)
    except ProviderError as exc:
        assert exc.message
        if isinstance(exc, ProviderThrottled):
            assert 0 <= exc.retry_after_s <= 3600
        accepted = None
    check(accepted, "artnex")


@PROPERTY
@given(status_codes, headers, st.binary(max_size=512))
def test_arbitrary_bytes(code: int, head: dict[str, str], body: bytes) -> None:
    run_photio(code, head, body)
    run_artnex(code, head, body)


@PROPERTY
@given(status_codes, json_values)
def test_arbitrary_json(code: int, value: Any) -> None:
    body = json.dumps(value).encode()
    run_photio(code, {}, body)
    run_artnex(code, {}, body)


@PROPERTY
@given(status_codes, headers, photio_like)
def test_photio_shaped_json(code: int, head: dict[str, str], value: dict[str, Any]) -> None:
    run_photio(code, head, json.dumps(value, allow_nan=True).encode())


@PROPERTY
@given(status_codes, headers, artnex_like)
def test_artnex_shaped_json(code: int, head: dict[str, str], value: dict[str, Any]) -> None:
    run_artnex(code, head, json.dumps(value, allow_nan=True).encode())


@PROPERTY
@given(json_values)
def test_parsers_raise_only_rejected_payload(value: Any) -> None:
    for parse in (parse_photio_answer, parse_artnex_answer):
        try:
            parse(value)
        except RejectedPayload:
            assert not isinstance(value, dict)  # only a non-object is refused
        else:
            assert isinstance(value, dict)


@PROPERTY
@given(st.text(max_size=200) | st.binary(max_size=150).map(lambda b: base64.b64encode(b).decode()))
def test_decode_image_body_raises_only_rejected_payload(text: str) -> None:
    try:
        data = decode_image_body(text)
    except RejectedPayload:
        return
    assert data


@PROPERTY
@given(st.binary(min_size=1, max_size=200))
def test_base64_round_trips(data: bytes) -> None:
    text = base64.b64encode(data).decode()
    assert decode_image_body(text) == data
    assert decode_image_body("data:image/png;base64," + text) == data
    assert decode_image_body(text.rstrip("=")) == data


def test_well_formed_successes_always_succeed() -> None:
    accepted = photio.classify_submit(
        "job_1", 200, {}, json.dumps({"status_code": 200, "body": B64}).encode()
    )
    check(accepted, "photio")
    body = {"success": True, "image_url": "https://cdn/x.png", "credits_used": 100}
    check(artnex.classify_submit("job_1", 200, {}, json.dumps(body).encode()), "artnex")
