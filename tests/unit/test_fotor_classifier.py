"""Every documented Fotor answer, mapped to what the orchestrator acts on."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.providers.base import SubmitRequest
from orchestrator.providers.fotor import (
    build_submit_body,
    image_data_uri,
    sniff_image_type,
    task_path,
)
from orchestrator.providers.fotor_answers import (
    DEFAULT_RETRY_AFTER_S,
    classify_credits,
    classify_submit,
    classify_task,
    fotor_retry_after,
    parse_callback_body,
    rewrite_result_url,
    update_from_task,
)
from orchestrator.providers.fotor_options import validate_fotor_options
from schemas.errors import (
    ProviderError,
    ProviderRejected,
    ProviderThrottled,
    ProviderUnavailable,
    ProviderUncertain,
    RejectedInput,
)
from schemas.fotor import parse_task
from schemas.jobs import UpdateStatus

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
TASK_ID = "3f2a0c9e8b7d4e61a5c0d9e8f7a6b5c4"
S3_BASE = "https://static.example"


def js(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def ok(data: Any) -> bytes:
    return js({"code": "000", "msg": "success", "data": data})


def task(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "taskId": TASK_ID,
        "createTime": 1732588068355,
        "updateTime": 1732588093312,
        "status": 0,
        "businessId": "",
        "type": "imgupscale",
        "resultUrl": "",
        "hasHsfw": False,
    }
    data.update(fields)
    return data


def poll(data: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("task_id", TASK_ID)
    kwargs.setdefault("s3_base_url", S3_BASE)
    return classify_task(200, {}, ok(data), now=NOW, **kwargs)


# --- options -------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1, 2, 2.5, 4, 4.0])
def test_options_defaults(scale: float) -> None:
    assert validate_fotor_options(scale, {}) == {"max_image_width": 2048, "max_image_height": 2048}


def test_options_given_and_constructor_defaults() -> None:
    assert validate_fotor_options(
        2, {"max_image_width": 1024.0}, default_width=512, default_height=4096
    ) == {"max_image_width": 1024, "max_image_height": 4096}
    assert validate_fotor_options(2, {"max_image_width": 64, "max_image_height": 8192}) == {
        "max_image_width": 64,
        "max_image_height": 8192,
    }


@pytest.mark.parametrize(
    ("scale", "options", "needle"),
    [
        (0.5, {}, "scale"),
        (4.01, {}, "scale"),
        (float("nan"), {}, "scale"),
        (True, {}, "scale"),
        ("2", {}, "scale"),
        (2, {"max_image_width": 63}, "max_image_width"),
        (2, {"max_image_height": 8193}, "max_image_height"),
        (2, {"max_image_width": "2048"}, "max_image_width"),
        (2, {"max_image_width": True}, "max_image_width"),
        (2, {"max_image_width": 100.5}, "max_image_width"),
        (2, {"endpoint": "smart"}, "'endpoint'"),
        (2, {"userImageUrl": "x"}, "'userImageUrl'"),
        (2, {"upscaling_resize": 2}, "'upscaling_resize'"),
    ],
)
def test_options_rejected(scale: Any, options: dict[str, Any], needle: str) -> None:
    with pytest.raises(RejectedInput, match=needle):
        validate_fotor_options(scale, options)


def test_options_must_be_a_mapping() -> None:
    with pytest.raises(RejectedInput):
        validate_fotor_options(2, ["max_image_width"])  # type: ignore[arg-type]


# --- submit body ---------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 8


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (WEBP, "image/webp"),
        (b"GIF89a...", "image/gif"),
        (b"BM\x00\x00", "image/bmp"),
        (b"II*\x00rest", "image/tiff"),
        (b"\x00\x00\x00\x18ftypavif", "image/avif"),
        (b"XXXXXXXXWEBP", "image/png"),  # WEBP needs RIFF
        (b"unknown", "image/png"),
        (b"", "image/png"),
    ],
)
def test_sniff_image_type(data: bytes, media_type: str) -> None:
    assert sniff_image_type(data) == media_type


def test_data_uri_round_trips() -> None:
    uri = image_data_uri(JPEG)
    prefix, _, payload = uri.partition(",")
    assert prefix == "data:image/jpeg;base64"
    assert base64.b64decode(payload) == JPEG


def test_submit_body_with_url_and_with_bytes() -> None:
    options = {"max_image_width": 2048, "max_image_height": 1024}
    url_request = SubmitRequest("job-1", 2.0, {}, "https://cdn.example/in.jpg")
    assert build_submit_body(url_request, options) == {
        "upscaling_resize": 2,
        "userImageUrl": "https://cdn.example/in.jpg",
        "max_image_width": 2048,
        "max_image_height": 1024,
    }
    bytes_request = SubmitRequest("job-1", 2.5, {}, None, image_bytes=PNG)
    body = build_submit_body(bytes_request, options)
    assert body["upscaling_resize"] == 2.5
    assert body["userImageUrl"] == "data:image/png;base64," + base64.b64encode(PNG).decode()


def test_submit_body_without_image_is_rejected_input() -> None:
    with pytest.raises(ProviderRejected) as info:
        build_submit_body(
            SubmitRequest("job-1", 2.0, {}, None),
            {"max_image_width": 2048, "max_image_height": 2048},
        )
    assert info.value.reason == "rejected_input"


# --- submit answers --------------------------------------------------------------------


def test_submit_accepted() -> None:
    accepted = classify_submit(200, {}, ok({"taskId": TASK_ID}))
    assert accepted.provider_job_id == TASK_ID
    assert accepted.update is None


def test_submit_accepted_with_integer_code_and_extra_fields() -> None:
    body = js({"code": 0, "msg": None, "data": {"taskId": TASK_ID, "new": 1}, "x": []})
    assert classify_submit(200, {}, body).provider_job_id == TASK_ID


Case = tuple[int, dict[str, str], bytes, type[ProviderError], str | None]

SUBMIT_ERRORS: list[Case] = [
    # errors inside HTTP 200
    (
        200,
        {},
        js({"code": "510", "msg": "No enough credits"}),
        ProviderRejected,
        "insufficient_credit",
    ),
    (200, {}, js({"code": "999", "msg": "unknown error", "data": None}), ProviderRejected, None),
    (200, {}, js({"code": "123", "msg": "Image URL invalid"}), ProviderRejected, "provider_failed"),
    (200, {}, js({"code": "401", "msg": {"why": "x"}}), ProviderRejected, "provider_failed"),
    # HTTP 200 we cannot read: the task may exist
    (200, {}, b"<html>ok</html>", ProviderUncertain, None),
    (200, {}, b"", ProviderUncertain, None),
    (200, {}, js([1]), ProviderUncertain, None),
    (200, {}, js({"msg": "success", "data": {"taskId": TASK_ID}}), ProviderUncertain, None),
    (200, {}, js({"code": None, "data": {"taskId": TASK_ID}}), ProviderUncertain, None),
    (200, {}, ok(None), ProviderUncertain, None),
    (200, {}, ok({}), ProviderUncertain, None),
    (200, {}, ok({"taskId": ""}), ProviderUncertain, None),
    (200, {}, ok({"taskId": 42}), ProviderUncertain, None),
    (200, {}, ok({"taskId": "a" * 600}), ProviderUncertain, None),
    # documented HTTP codes
    (400, {}, js({"code": "400", "msg": "bad params"}), ProviderRejected, "rejected_input"),
    (401, {}, js({"code": "401", "msg": "bad key"}), ProviderRejected, "provider_auth"),
    (429, {}, b"", ProviderThrottled, None),
    (500, {}, b"", ProviderUnavailable, None),
    (502, {}, b"<html>Bad Gateway</html>", ProviderUncertain, None),
    (503, {}, b"", ProviderUnavailable, None),
    (504, {}, b"", ProviderUncertain, None),
    # undocumented
    (403, {}, b"", ProviderRejected, "provider_auth"),
    (404, {}, b"", ProviderRejected, "provider_failed"),
    (408, {}, b"", ProviderUnavailable, None),
    (302, {"Location": "https://elsewhere"}, b"", ProviderRejected, "provider_failed"),
]


@pytest.mark.parametrize(("code", "headers", "body", "error", "reason"), SUBMIT_ERRORS)
def test_submit_errors(
    code: int, headers: dict[str, str], body: bytes, error: type[ProviderError], reason: str | None
) -> None:
    with pytest.raises(ProviderError) as info:
        classify_submit(code, headers, body, now=NOW)
    assert type(info.value) is error
    if reason is not None:
        assert isinstance(info.value, ProviderRejected)
        assert info.value.reason == reason


def test_submit_999_is_final_not_retried() -> None:
    with pytest.raises(ProviderRejected) as info:
        classify_submit(200, {}, js({"code": "999", "msg": "unknown error", "data": None}))
    assert info.value.reason == "provider_failed"
    assert not info.value.retryable
    assert "999" in info.value.message
    assert "unknown error" in info.value.message


def test_error_messages_carry_fotor_msg() -> None:
    with pytest.raises(ProviderRejected) as info:
        classify_submit(200, {}, js({"code": "510", "msg": "No enough credits"}))
    assert "No enough credits" in info.value.message
    with pytest.raises(ProviderRejected) as info:
        classify_submit(400, {}, js({"code": "400", "msg": "upscaling_resize missing"}))
    assert "upscaling_resize missing" in info.value.message
    with pytest.raises(ProviderRejected) as info:
        classify_submit(200, {}, js({"code": "7", "msg": ["a", 1]}))
    assert '["a",1]' in info.value.message
    with pytest.raises(ProviderRejected) as info:
        classify_submit(400, {}, b"plain text reason")
    assert "plain text reason" in info.value.message
    with pytest.raises(ProviderRejected) as info:
        classify_submit(400, {}, js({"code": "400", "msg": "x" * 100_000}))
    assert len(info.value.message) < 2200


# --- Retry-After -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, DEFAULT_RETRY_AFTER_S),
        ({"Retry-After": ""}, DEFAULT_RETRY_AFTER_S),
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"Retry-After": "Thu, 01 Jan 2026 12:02:00 GMT"}, 120.0),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float) -> None:
    assert DEFAULT_RETRY_AFTER_S == 30.0
    assert fotor_retry_after(headers, now=NOW) == expected


@pytest.mark.parametrize("call", ["submit", "poll", "credits"])
def test_429_is_throttled_everywhere(call: str) -> None:
    headers = {"Retry-After": "12"}
    body = js({"code": "429", "msg": "too many requests"})
    with pytest.raises(ProviderThrottled) as info:
        if call == "submit":
            classify_submit(429, headers, body, now=NOW)
        elif call == "poll":
            classify_task(429, headers, body, now=NOW)
        else:
            classify_credits(429, headers, body, now=NOW)
    assert info.value.retry_after_s == 12.0
    assert info.value.retryable


# --- task details ----------------------------------------------------------------------


def test_status_0_is_running() -> None:
    update = poll(task(status=0))
    assert update.status is UpdateStatus.RUNNING
    assert update.provider == "fotor"
    assert update.provider_job_id == TASK_ID
    assert update.failure is None
    assert update.result_url is None


@pytest.mark.parametrize("status", [-1, 5, 99, 100000, "7", 0.0])
def test_unknown_statuses_are_running(status: Any) -> None:
    assert poll(task(status=status)).status is UpdateStatus.RUNNING


def test_status_1_with_url_succeeds() -> None:
    data = task(
        status=1,
        resultUrl="https://pub-static.fotor.com/x/out.jpg",
        creditsIncrement=1,
        infomation={"sic": True},
    )
    update = poll(data)
    assert update.status is UpdateStatus.SUCCEEDED
    assert update.result_url == "https://pub-static.fotor.com/x/out.jpg"
    assert update.cost == 1.0
    assert update.raw == data


@pytest.mark.parametrize("status", [1, "1", 1.0])
def test_status_1_spellings(status: Any) -> None:
    update = poll(task(status=status, resultUrl="https://cdn/x.jpg"))
    assert update.status is UpdateStatus.SUCCEEDED


@pytest.mark.parametrize("url", ["", "   ", None, 17, ["https://cdn/x.jpg"]])
def test_status_1_without_url_fails(url: Any) -> None:
    data = task(status=1)
    if url is None:
        del data["resultUrl"]
    else:
        data["resultUrl"] = url
    update = poll(data)
    assert update.status is UpdateStatus.FAILED
    assert update.failure is not None
    assert update.failure.reason == "provider_failed"
    assert "no result URL" in update.failure.message


def test_status_1_with_s3_url_is_rewritten() -> None:
    update = poll(task(status=1, resultUrl="s3://img-pub-fotor/results/abc.png"))
    assert update.status is UpdateStatus.SUCCEEDED
    assert update.result_url == "https://static.example/results/abc.png"


@pytest.mark.parametrize(
    "url", ["ftp://cdn/x.jpg", "s3://other-bucket/x.png", "file:///etc/passwd", "x.jpg", "data:,"]
)
def test_status_1_with_unusable_url_is_result_invalid(url: str) -> None:
    update = poll(task(status=1, resultUrl=url))
    assert update.status is UpdateStatus.FAILED
    assert update.failure is not None
    assert update.failure.reason == "result_invalid"
    assert "passwd" not in update.failure.message  # the URL itself is not echoed


@pytest.mark.parametrize("status", [0, 1, 2])
@pytest.mark.parametrize("flag", [True, 1, "true", "TRUE"])
def test_nsfw_fails_with_its_own_reason(status: int, flag: Any) -> None:
    update = poll(task(status=status, hasHsfw=flag, resultUrl="https://cdn/x.jpg"))
    assert update.status is UpdateStatus.FAILED
    assert update.failure is not None
    assert update.failure.reason == "nsfw"
    assert update.result_url is None


@pytest.mark.parametrize("flag", [False, 0, None, "false", "", [], {}])
def test_not_nsfw(flag: Any) -> None:
    update = poll(task(status=1, hasHsfw=flag, resultUrl="https://cdn/x.jpg"))
    assert update.status is UpdateStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        ("Image decode failed", "Image decode failed"),
        (None, "Fotor reported the task failed"),
        ({"message": "GPU on fire"}, "GPU on fire"),
        (12, "12"),
        ("   ", "Fotor reported the task failed"),
    ],
)
def test_status_2_fails(msg: Any, expected: str) -> None:
    data = task(status=2)
    if msg is not None:
        data["msg"] = msg
    update = poll(data)
    assert update.status is UpdateStatus.FAILED
    assert update.failure is not None
    assert update.failure.reason == "provider_failed"
    assert expected in update.failure.message


@pytest.mark.parametrize(("status", "needle"), [(3, "timed the task out"), (4, "cancelled")])
def test_status_3_and_4_fail(status: int, needle: str) -> None:
    update = poll(task(status=status))
    assert update.status is UpdateStatus.FAILED
    assert update.failure is not None
    assert update.failure.reason == "provider_failed"
    assert needle in update.failure.message


def test_task_fills_a_missing_id_and_refuses_another_one() -> None:
    data = task(status=0)
    del data["taskId"]
    assert poll(data).provider_job_id == TASK_ID
    with pytest.raises(ProviderUnavailable):
        poll(task(status=1, taskId="other", resultUrl="https://cdn/x.jpg"))


def test_odd_credits_are_ignored() -> None:
    for value in ["1", -1, True, None, [1]]:
        update = poll(task(status=1, resultUrl="https://cdn/x.jpg", creditsIncrement=value))
        assert update.cost is None, value


TASK_ERRORS: list[Case] = [
    (200, {}, b"not json", ProviderUnavailable, None),
    (200, {}, ok(None), ProviderUnavailable, None),
    (200, {}, ok({"taskId": TASK_ID}), ProviderUnavailable, None),  # no status
    (200, {}, ok(task(status="done")), ProviderUnavailable, None),
    (200, {}, ok(task(status=None)), ProviderUnavailable, None),
    (200, {}, ok(task(status=True)), ProviderUnavailable, None),
    (200, {}, js({"code": "999", "msg": "unknown error"}), ProviderUnavailable, None),
    (200, {}, js({"code": "510", "msg": "No enough credits"}), ProviderRejected, None),
    (200, {}, js({"code": "404", "msg": "task not found"}), ProviderRejected, "provider_failed"),
    (400, {}, b"", ProviderRejected, "rejected_input"),
    (401, {}, b"", ProviderRejected, "provider_auth"),
    (404, {}, js({"code": "404", "msg": "nope"}), ProviderRejected, "provider_failed"),
    (500, {}, b"", ProviderUnavailable, None),
    (502, {}, b"", ProviderUnavailable, None),  # a poll is harmless to repeat
    (503, {}, b"", ProviderUnavailable, None),
    (504, {}, b"", ProviderUnavailable, None),
]


@pytest.mark.parametrize(("code", "headers", "body", "error", "reason"), TASK_ERRORS)
def test_task_errors(
    code: int, headers: dict[str, str], body: bytes, error: type[ProviderError], reason: str | None
) -> None:
    with pytest.raises(ProviderError) as info:
        classify_task(code, headers, body, task_id=TASK_ID, now=NOW)
    assert type(info.value) is error
    if reason is not None:
        assert isinstance(info.value, ProviderRejected)
        assert info.value.reason == reason


def test_poll_510_is_insufficient_credit() -> None:
    with pytest.raises(ProviderRejected) as info:
        classify_task(200, {}, js({"code": "510", "msg": "No enough credits"}))
    assert info.value.reason == "insufficient_credit"


# --- result URLs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://pub-static.fotor.com/a/b.jpg", "https://pub-static.fotor.com/a/b.jpg"),
        ("HTTP://cdn/x.png?sig=1", "HTTP://cdn/x.png?sig=1"),
        ("  https://cdn/x.png  ", "https://cdn/x.png"),
        ("s3://img-pub-fotor/a/b.jpg", "https://pub-static.fotor.com/a/b.jpg"),
        ("S3://IMG-PUB-FOTOR/a/b.jpg", "https://pub-static.fotor.com/a/b.jpg"),
        ("s3://img-pub-fotor//a.jpg", "https://pub-static.fotor.com/a.jpg"),
        ("s3://img-pub-fotor/", None),
        ("s3://img-pub-fotor", None),
        ("s3://elsewhere/a.jpg", None),
        ("http:///nohost", None),
        ("https://", None),
        ("//cdn/x.png", None),
        ("javascript:alert(1)", None),
        ("", None),
    ],
)
def test_rewrite_result_url(url: str, expected: str | None) -> None:
    assert rewrite_result_url(url) == expected


def test_rewrite_uses_the_configured_base() -> None:
    assert rewrite_result_url(
        "s3://img-pub-fotor/x.png", "http://127.0.0.1:9/sandbox/fotor/s3/"
    ) == ("http://127.0.0.1:9/sandbox/fotor/s3/x.png")


# --- credits ---------------------------------------------------------------------------


def test_credits() -> None:
    body = ok({"businessId": "b-1", "total": 1000, "remaining": 998})
    assert classify_credits(200, {}, body) == {
        "business_id": "b-1",
        "total": 1000,
        "remaining": 998,
    }
    odd = ok({"total": "lots", "remaining": 2.5})
    assert classify_credits(200, {}, odd) == {
        "business_id": None,
        "total": None,
        "remaining": 2.5,
    }


@pytest.mark.parametrize(
    ("code", "body", "error"),
    [
        (200, ok(None), ProviderUnavailable),
        (200, b"junk", ProviderUnavailable),
        (200, js({"code": "999", "msg": "unknown error"}), ProviderUnavailable),
        (401, js({"code": "401", "msg": "bad key"}), ProviderRejected),
        (500, b"", ProviderUnavailable),
    ],
)
def test_credits_errors(code: int, body: bytes, error: type[ProviderError]) -> None:
    with pytest.raises(ProviderError) as info:
        classify_credits(code, {}, body)
    assert type(info.value) is error


# --- webhook ---------------------------------------------------------------------------


def test_documented_webhook_bodies() -> None:
    running = parse_callback_body(
        js({"taskId": TASK_ID, "status": 0, "businessId": "", "type": "imgupscale"})
    )
    assert running.status is UpdateStatus.RUNNING
    assert running.provider_job_id == TASK_ID
    done = parse_callback_body(
        js(
            {
                "taskId": TASK_ID,
                "status": 1,
                "businessId": "",
                "type": "imgupscale",
                "resultUrl": "https://pub-static.fotor.com/x/out.jpg",
            }
        )
    )
    assert done.status is UpdateStatus.SUCCEEDED
    assert done.result_url == "https://pub-static.fotor.com/x/out.jpg"
    nsfw = parse_callback_body(js({"taskId": TASK_ID, "status": 2, "hasHsfw": True}))
    assert nsfw.failure is not None and nsfw.failure.reason == "nsfw"
    empty = parse_callback_body(js({"taskId": TASK_ID, "status": 1, "resultUrl": ""}))
    assert empty.status is UpdateStatus.FAILED


def test_webhook_in_an_envelope_is_unwrapped() -> None:
    update = parse_callback_body(ok({"taskId": TASK_ID, "status": 2, "msg": "bad image"}))
    assert update.status is UpdateStatus.FAILED
    assert update.failure is not None and update.failure.message == "bad image"


def test_webhook_s3_url_uses_the_given_base() -> None:
    body = js({"taskId": TASK_ID, "status": 1, "resultUrl": "s3://img-pub-fotor/r/x.png"})
    assert parse_callback_body(body, s3_base_url=S3_BASE).result_url == S3_BASE + "/r/x.png"


def test_update_from_task_directly() -> None:
    parsed = parse_task(task(status=1, resultUrl="s3://img-pub-fotor/k.png", createTime=1.5e12))
    assert parsed.create_time_ms == 1_500_000_000_000
    update = update_from_task(parsed)
    assert update.result_url == "https://pub-static.fotor.com/k.png"


@pytest.mark.parametrize(
    ("task_id", "path"),
    [
        (TASK_ID, f"/v1/aiart/tasks/{TASK_ID}"),
        ("a/b?c", "/v1/aiart/tasks/a%2Fb%3Fc"),
        ("..", "/v1/aiart/tasks/%2E%2E"),
    ],
)
def test_task_path(task_id: str, path: str) -> None:
    assert task_path(task_id) == path
