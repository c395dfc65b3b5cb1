"""Fotor payload parsing: junk and properties over arbitrary input."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.providers.fotor_answers import (
    classify_credits,
    classify_submit,
    classify_task,
    parse_callback_body,
)
from schemas.errors import ProviderError, RejectedPayload
from schemas.fotor import parse_credits, parse_envelope, parse_task, parse_webhook
from schemas.jobs import ProviderUpdate, UpdateStatus

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
# Task data / webhook bodies shaped like Fotor's, each field of any JSON type or absent.
task_like = st.fixed_dictionaries(
    {},
    optional={
        "taskId": st.just("3f2a0c9e8b7d4e61a5c0d9e8f7a6b5c4") | json_values,
        "status": st.sampled_from([0, 1, 2, 3, 4, -1, "1"]) | json_values,
        "resultUrl": st.sampled_from(
            ["", "https://cdn/x.jpg", "s3://img-pub-fotor/x.jpg", "ftp://x"]
        )
        | json_values,
        "hasHsfw": st.booleans() | json_values,
        "creditsIncrement": st.integers() | st.floats() | json_values,
        "msg": json_values,
        "createTime": st.integers() | json_values,
        "businessId": json_values,
        "type": json_values,
    },
).flatmap(
    lambda d: st.dictionaries(st.text(max_size=8), json_values, max_size=3).map(
        lambda extra: {**extra, **d}
    )
)
envelope_like = st.fixed_dictionaries(
    {},
    optional={
        "code": st.sampled_from(["000", "510", "999", "1", 0, 999]) | json_values,
        "msg": json_values,
        "data": task_like | json_values,
    },
)
status_codes = st.sampled_from([200, 201, 204, 302, 400, 401, 403, 404, 429, 500, 502, 504])
headers = st.dictionaries(
    st.sampled_from(["Retry-After", "retry-after", "Date", "X-Other"]), st.text(max_size=40)
)


def check_update(update: ProviderUpdate) -> None:
    assert isinstance(update, ProviderUpdate)
    assert update.provider == "fotor"
    assert isinstance(update.provider_job_id, str) and update.provider_job_id
    if update.status is UpdateStatus.SUCCEEDED:
        assert isinstance(update.result_url, str)
        assert update.result_url.lower().startswith(("http://", "https://"))
    else:
        assert update.result_url is None
    if update.status is UpdateStatus.FAILED:
        assert update.failure is not None and update.failure.message
    if update.cost is not None:
        assert update.cost >= 0


def check_callback(body: bytes) -> None:
    """``parse_callback`` gives an update or ``RejectedPayload``, nothing else."""
    try:
        update = parse_callback_body(body)
    except RejectedPayload:
        return
    check_update(update)


def check_classifiers(code: int, hdrs: dict[str, str], body: bytes) -> None:
    """The classifiers give a result or a ``ProviderError``, nothing else."""
    with contextlib.suppress(ProviderError):
        classify_submit(code, hdrs, body)
    with contextlib.suppress(ProviderError):
        check_update(classify_task(code, hdrs, body))
    with contextlib.suppress(ProviderError):
        classify_task(code, hdrs, body, task_id="3f2a0c9e8b7d4e61a5c0d9e8f7a6b5c4")
    try:
        credits = classify_credits(code, hdrs, body)
    except ProviderError:
        pass
    else:
        assert set(credits) == {"business_id", "total", "remaining"}


@PROPERTY
@given(st.binary(max_size=512))
def test_arbitrary_bytes_callback(body: bytes) -> None:
    check_callback(body)


@PROPERTY
@given(json_values)
def test_arbitrary_json_callback(value: Any) -> None:
    check_callback(json.dumps(value).encode())


@PROPERTY
@given(task_like)
def test_task_shaped_callback(value: dict[str, Any]) -> None:
    # allow_nan: Python writes NaN/Infinity for such floats; they must be refused, not crash.
    check_callback(json.dumps(value, allow_nan=True).encode())


@PROPERTY
@given(status_codes, headers, st.binary(max_size=256))
def test_arbitrary_bytes_classifiers(code: int, hdrs: dict[str, str], body: bytes) -> None:
    check_classifiers(code, hdrs, body)


@PROPERTY
@given(status_codes, headers, envelope_like)
def test_envelope_shaped_classifiers(code: int, hdrs: dict[str, str], value: Any) -> None:
    check_classifiers(code, hdrs, json.dumps(value, allow_nan=True).encode())


@PROPERTY
@given(json_values | task_like | envelope_like)
def test_schema_parsers_raise_only_rejected_payload(value: Any) -> None:
    for parse in (parse_envelope, parse_task, parse_webhook, parse_credits):
        with contextlib.suppress(RejectedPayload):
            parse(value)


@PROPERTY
@given(
    st.text(min_size=1, max_size=40).filter(str.strip),
    st.integers(min_value=-5, max_value=10),
    st.dictionaries(st.text(max_size=8), json_values, max_size=4),
)
def test_well_formed_webhooks_always_parse(
    task_id: str, status: int, extra: dict[str, Any]
) -> None:
    body = {**extra, "taskId": task_id, "status": status, "resultUrl": "https://cdn/x.jpg"}
    body.pop("hasHsfw", None)
    body.pop("msg", None)
    update = parse_callback_body(json.dumps(body).encode())
    assert update.provider_job_id == task_id
    expected = {
        1: UpdateStatus.SUCCEEDED,
        2: UpdateStatus.FAILED,
        3: UpdateStatus.FAILED,
        4: UpdateStatus.FAILED,
    }.get(status, UpdateStatus.RUNNING)
    assert update.status is expected


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"null",
        b"[]",
        b'"status"',
        b"{",
        b"\xff\xfe{}",
        b'\xef\xbb\xbf{"taskId":"t","status":1}',  # UTF-8 BOM
        b'{"taskId":"t","status":NaN}',
        b'{"taskId":"t","status":1e400}',
        b'{"taskId":"t","status":' + b"9" * 5000 + b"}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"taskId":"\\ud800","status":1}',
        b'{"taskId":"t"}',
        b'{"status":1}',
        b'{"taskId":null,"status":1}',
        b'{"taskId":"","status":1}',
        b'{"taskId":"  ","status":1}',
        b'{"taskId":7,"status":1}',
        b'{"taskId":"t","status":true}',
        b'{"taskId":"t","status":"done"}',
        b'{"taskId":"t","status":1.5}',
        b'{"taskId":"t","status":null}',
        b'{"taskId":"' + b"a" * 600 + b'","status":1}',
        b'{"code":"000","data":null}',
        b" " * (1024 * 1024 + 1),
    ],
)
def test_malformed_callbacks_are_rejected(body: bytes) -> None:
    with pytest.raises(RejectedPayload):
        parse_callback_body(body)


def test_envelope_parsing() -> None:
    env = parse_envelope({"code": "000", "msg": "success", "data": {"taskId": "t"}})
    assert env.ok and env.msg == "success" and env.data == {"taskId": "t"}
    assert parse_envelope({"code": 0}).code == "000"
    assert parse_envelope({"code": 510, "msg": 5}).code == "510"
    assert parse_envelope({"code": " 999 ", "msg": {"message": "m"}}).msg == "m"
    bad: object
    for bad in [None, [], {"msg": "x"}, {"code": ""}, {"code": True}, {"code": -1}, {"code": []}]:
        with pytest.raises(RejectedPayload):
            parse_envelope(bad)


def test_task_parsing_keeps_unknown_and_misspelled_fields() -> None:
    parsed = parse_task(
        {
            "taskId": "t",
            "status": 1,
            "hasHsfw": False,
            "infomation": {"x": 1},
            "resultUrl": "https://cdn/x.jpg",
            "creditsIncrement": 1,
            "createTime": 1732588068355,
            "updateTime": "soon",
            "businessId": "",
            "type": "imgupscale",
            "msg": None,
        }
    )
    assert parsed.raw["infomation"] == {"x": 1}
    assert (parsed.nsfw, parsed.credits, parsed.create_time_ms) == (False, 1.0, 1732588068355)
    assert parsed.update_time_ms is None
    assert (parsed.business_id, parsed.type, parsed.msg) == ("", "imgupscale", None)


def test_credits_parsing() -> None:
    credits = parse_credits({"businessId": "b", "total": 10, "remaining": 3})
    assert (credits.business_id, credits.total, credits.remaining) == ("b", 10.0, 3.0)
    with pytest.raises(RejectedPayload):
        parse_credits(None)
