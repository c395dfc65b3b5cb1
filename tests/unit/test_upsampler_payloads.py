"""Upsampler payload parsing: documented bodies, junk, and properties over arbitrary input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.providers.upsampler_answers import parse_callback_body
from schemas.errors import RejectedPayload
from schemas.jobs import ProviderUpdate, UpdateStatus
from schemas.payloads import decode_json, readable_error
from schemas.upsampler import parse_submit_answer, parse_upsampler_result

PROPERTY = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

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
# Bodies shaped like Upsampler's, each field of any JSON type or absent.
result_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=20) | json_values,
        "status": st.sampled_from(["IN_QUEUE", "IN_PROGRESS", "SUCCESS", "FAILED"]) | json_values,
        "imageUrl": st.just("https://cdn/x.png") | json_values,
        "compressedImageUrl": st.just("https://cdn/x.jpg") | json_values,
        "creditCost": st.integers() | st.floats() | json_values,
        "error": json_values,
    },
).flatmap(
    lambda d: st.dictionaries(st.text(max_size=8), json_values, max_size=3).map(
        lambda extra: {**extra, **d}
    )
)


def check(body: bytes) -> None:
    """``parse_callback`` gives an update or ``RejectedPayload``, nothing else."""
    try:
        update = parse_callback_body(body)
    except RejectedPayload:
        return
    assert isinstance(update, ProviderUpdate)
    assert update.provider == "upsampler"
    assert isinstance(update.provider_job_id, str) and update.provider_job_id
    if update.status is UpdateStatus.SUCCEEDED:
        assert isinstance(update.result_url, str) and update.result_url
    if update.status is UpdateStatus.FAILED:
        assert update.failure is not None and update.failure.message
    if update.cost is not None:
        assert update.cost >= 0


@PROPERTY
@given(st.binary(max_size=512))
def test_arbitrary_bytes(body: bytes) -> None:
    check(body)


@PROPERTY
@given(json_values)
def test_arbitrary_json(value: Any) -> None:
    check(json.dumps(value).encode())


@PROPERTY
@given(result_like)
def test_result_shaped_json(value: dict[str, Any]) -> None:
    # allow_nan: Python writes NaN/Infinity for such floats; they must be refused, not crash.
    check(json.dumps(value, allow_nan=True).encode())


@PROPERTY
@given(
    st.text(min_size=1, max_size=40).filter(str.strip),
    st.sampled_from(["IN_QUEUE", "IN_PROGRESS", "SUCCESS", "FAILED", "WHATEVER"]),
    st.dictionaries(st.text(max_size=8), json_values, max_size=4),
)
def test_well_formed_results_always_parse(job_id: str, status: str, extra: dict[str, Any]) -> None:
    body = {**extra, "id": job_id, "status": status, "imageUrl": "https://cdn/x.png"}
    update = parse_callback_body(json.dumps(body).encode())
    assert update.provider_job_id == job_id
    expected = {
        "SUCCESS": UpdateStatus.SUCCEEDED,
        "FAILED": UpdateStatus.FAILED,
    }.get(status, UpdateStatus.RUNNING)
    assert update.status is expected


@PROPERTY
@given(json_values)
def test_readable_error_is_a_bounded_string(value: Any) -> None:
    text = readable_error(value)
    assert text is None or (isinstance(text, str) and 0 < len(text) <= 2000)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"null",
        b"[]",
        b'"SUCCESS"',
        b"{",
        b"\xff\xfe{}",
        b'\xef\xbb\xbf{"id":"j","status":"SUCCESS"}',  # UTF-8 BOM
        b'{"id":"j","status":"SUCCESS","creditCost":NaN}',
        b'{"id":"j","status":"SUCCESS","creditCost":Infinity}',
        b'{"id":"j","status":"SUCCESS","creditCost":' + b"9" * 5000 + b"}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"id":"j","status":"SUCCESS","x":' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"id":"\\ud800","status":"SUCCESS"}',
        b'{"id":"j","status":"SUCCESS","error":{"\\udfff":1}}',
        b'{"id":"j"}',
        b'{"status":"SUCCESS"}',
        b'{"id":null,"status":"SUCCESS"}',
        b'{"id":"","status":"SUCCESS"}',
        b'{"id":"   ","status":"SUCCESS"}',
        b'{"id":7,"status":"SUCCESS"}',
        b'{"id":["j"],"status":"SUCCESS"}',
        b'{"id":"j","status":true}',
        b'{"id":"' + b"a" * 600 + b'","status":"SUCCESS"}',
        b" " * (1024 * 1024 + 1),
    ],
)
def test_malformed_callbacks_are_rejected(body: bytes) -> None:
    with pytest.raises(RejectedPayload):
        parse_callback_body(body)


def test_documented_success_webhook() -> None:
    body = (
        b'{ "id": "a1b2c3d4e5f6", "status": "SUCCESS", "imageUrl": "https://x/full.png",'
        b' "compressedImageUrl": "https://x/small.jpg", "creditCost": 4 }'
    )
    update = parse_callback_body(body)
    assert update.status is UpdateStatus.SUCCEEDED
    assert update.provider_job_id == "a1b2c3d4e5f6"
    assert update.result_url == "https://x/full.png"
    assert update.cost == 4.0
    assert update.raw["compressedImageUrl"] == "https://x/small.jpg"


def test_documented_failure_webhook() -> None:
    body = (
        b'{ "id": "a1b2c3d4e5f6", "status": "FAILED", "error": "Failed to process image due to'
        b' an internal error. Your credits have been refunded." }'
    )
    update = parse_callback_body(body)
    assert update.status is UpdateStatus.FAILED
    assert update.failure is not None
    assert update.failure.reason == "provider_failed"
    assert update.failure.message.startswith("Failed to process image")


def test_huge_and_odd_numbers_are_ignored_not_fatal() -> None:
    for cost in [b"1e400", b"-3", b"true", b'"4"', b"1" + b"0" * 400, b"{}"]:
        update = parse_callback_body(b'{"id":"j","status":"IN_QUEUE","creditCost":' + cost + b"}")
        assert update.cost is None, cost
        assert update.status is UpdateStatus.RUNNING


def test_escaped_astral_characters_are_fine() -> None:
    update = parse_callback_body(b'{"id":"\\ud83d\\ude00","status":"IN_QUEUE"}')
    assert update.provider_job_id == "\U0001f600"


def test_parse_result_keeps_unknown_fields_and_drops_odd_ones() -> None:
    result = parse_upsampler_result(
        {"id": "j", "status": "SUCCESS", "imageUrl": 3, "creditCost": "x", "new": [1]}
    )
    assert result.image_url is None
    assert result.credit_cost is None
    assert result.raw["new"] == [1]


def test_parse_submit_answer() -> None:
    ok = parse_submit_answer({"id": "j", "status": "IN_QUEUE", "creditCost": 2.5})
    assert (ok.id, ok.status, ok.credit_cost, ok.error) == ("j", "IN_QUEUE", 2.5, None)
    failed = parse_submit_answer({"status": "FAILED", "error": {"message": "no"}})
    assert (failed.id, failed.status, failed.error) == (None, "FAILED", "no")
    bad: object
    for bad in [None, [], "x", {"id": 3}, {"id": ""}, {"status": 1}]:
        with pytest.raises(RejectedPayload):
            parse_submit_answer(bad)


def test_decode_json_size_cap() -> None:
    assert decode_json(b"{}", max_bytes=2) == {}
    with pytest.raises(RejectedPayload, match="larger"):
        decode_json(b"{} ", max_bytes=2)
