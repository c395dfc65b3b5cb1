"""Every documented Artnex answer and error code, mapped to what the orchestrator acts on."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from PIL import Image

from orchestrator.providers.artnex import (
    DEFAULT_QUOTA_RETRY_AFTER_S,
    MAX_IMAGE_BYTES,
    build_submit_body,
    classify_submit,
    image_field,
    quota_retry_after,
    validate_artnex_options,
)
from orchestrator.providers.base import SubmitRequest
from schemas.artnex import parse_artnex_answer
from schemas.errors import (
    ProviderError,
    ProviderRejected,
    ProviderThrottled,
    ProviderUnavailable,
    ProviderUncertain,
    RejectedInput,
    RejectedPayload,
)
from schemas.jobs import UpdateStatus

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
SUBMIT = "job_01test"
DOC_SUCCESS = {
    "success": True,
    "image_url": "https://cdn.artnex.ai/upscale/req_ups_abc123xyz/upscaled.jpg",
    "request_id": "req_ups_abc123xyz",
    "credits_used": 100,
}


def js(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def failure(code: str | None, message: str | None = "text") -> bytes:
    body: dict[str, Any] = {"success": False}
    if code is not None:
        body["error"] = code
    if message is not None:
        body["message"] = message
    return js(body)


def encoded(fmt: str, size: tuple[int, int] = (4, 4)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(buf, format=fmt)
    return buf.getvalue()


# --- success ---------------------------------------------------------------------------


def test_documented_success() -> None:
    accepted = classify_submit(SUBMIT, 200, {}, js(DOC_SUCCESS))
    assert accepted.provider_job_id == "req_ups_abc123xyz"
    assert accepted.cost == 100.0
    update = accepted.update
    assert update is not None
    assert update.status is UpdateStatus.SUCCEEDED
    assert update.provider == "artnex"
    assert update.provider_job_id == "req_ups_abc123xyz"
    assert update.result_url == DOC_SUCCESS["image_url"]
    assert update.result_bytes is None
    assert update.cost == 100.0
    assert update.raw == DOC_SUCCESS


@pytest.mark.parametrize("request_id", [None, "", "   ", 42, "x" * 600])
def test_success_without_usable_request_id_gets_a_synthesized_id(request_id: Any) -> None:
    body = {"success": True, "image_url": " https://cdn/x.jpg "}
    if request_id is not None:
        body["request_id"] = request_id
    accepted = classify_submit(SUBMIT, 201, {}, js(body))
    assert accepted.provider_job_id.startswith("artnex-")
    assert len(accepted.provider_job_id) == len("artnex-") + 24
    assert accepted.update is not None and accepted.update.result_url == "https://cdn/x.jpg"
    again = classify_submit(SUBMIT, 201, {}, js(body))
    assert again.provider_job_id == accepted.provider_job_id
    # The same answer to another job's submit (the same input twice): another id.
    other = classify_submit("job_01other", 201, {}, js(body))
    assert other.provider_job_id != accepted.provider_job_id


@pytest.mark.parametrize("credits", ["100", -1, True, None, [], 1e400])
def test_odd_credits_are_unknown_not_assumed(credits: Any) -> None:
    body = {**DOC_SUCCESS, "credits_used": credits}
    raw = json.dumps(body).replace("Infinity", "1e400").encode()
    accepted = classify_submit(SUBMIT, 200, {}, raw)
    assert accepted.cost is None
    assert accepted.update is not None and accepted.update.cost is None


# --- errors ----------------------------------------------------------------------------

Case = tuple[int, dict[str, str], bytes, type[ProviderError], str | None]

ERRORS: list[Case] = [
    # the documented table
    (400, {}, failure("missing_image"), ProviderRejected, "rejected_input"),
    (400, {}, failure("invalid_image_format"), ProviderRejected, "rejected_input"),
    (400, {}, failure("image_too_large"), ProviderRejected, "rejected_input"),
    (400, {}, failure("invalid_scale"), ProviderRejected, "rejected_input"),
    (401, {}, failure("invalid_api_key"), ProviderRejected, "provider_auth"),
    (402, {}, failure("insufficient_credits"), ProviderRejected, "insufficient_credit"),
    (429, {}, failure("rate_limit_exceeded"), ProviderThrottled, None),
    (422, {}, failure("validation_error"), ProviderRejected, "rejected_input"),
    (500, {}, failure("internal_error"), ProviderRejected, "provider_failed"),
    # errors inside a 200: the code decides
    (200, {}, failure("invalid_api_key"), ProviderRejected, "provider_auth"),
    (200, {}, failure("insufficient_credits"), ProviderRejected, "insufficient_credit"),
    (200, {}, failure("INVALID_SCALE"), ProviderRejected, "rejected_input"),
    (200, {}, failure("rate_limit_exceeded"), ProviderThrottled, None),
    (200, {}, failure("gpu_on_fire"), ProviderRejected, "provider_failed"),
    (200, {}, failure(None), ProviderRejected, "provider_failed"),
    (200, {}, js({"error": "invalid_scale"}), ProviderRejected, "rejected_input"),
    (
        200,
        {},
        js({"success": False, "error": {"code": "missing_image"}}),
        ProviderRejected,
        "rejected_input",
    ),
    # a known code wins over an odd status
    (500, {}, failure("insufficient_credits"), ProviderRejected, "insufficient_credit"),
    (403, {}, failure("rate_limit_exceeded"), ProviderThrottled, None),
    # unknown or missing codes: the HTTP status decides
    (400, {}, b"Bad Request", ProviderRejected, "rejected_input"),
    (401, {}, b"", ProviderRejected, "provider_auth"),
    (403, {}, failure("forbidden"), ProviderRejected, "provider_auth"),
    (402, {}, b"", ProviderRejected, "insufficient_credit"),
    (413, {}, b"", ProviderRejected, "rejected_input"),
    (429, {}, b"Too Many Requests", ProviderThrottled, None),
    (404, {}, b"Not Found", ProviderRejected, "provider_failed"),
    (302, {"Location": "https://x"}, b"", ProviderRejected, "provider_failed"),
    (500, {}, b"<html>oops</html>", ProviderRejected, "provider_failed"),
    (502, {}, b"<html>Bad Gateway</html>", ProviderUncertain, None),
    (504, {}, b"", ProviderUncertain, None),
    (599, {}, b"", ProviderUncertain, None),
    (503, {}, failure("maintenance"), ProviderUnavailable, None),
    (408, {}, b"", ProviderUnavailable, None),
    # a 2xx without a usable result: answered, maybe billed, final
    (200, {}, b"", ProviderRejected, "result_invalid"),
    (200, {}, b"<html>", ProviderRejected, "result_invalid"),
    (200, {}, js([DOC_SUCCESS]), ProviderRejected, "result_invalid"),
    (200, {}, js({"image_url": "https://cdn/x.jpg"}), ProviderRejected, "result_invalid"),
    (
        200,
        {},
        js({"success": "true", "image_url": "https://cdn/x.jpg"}),
        ProviderRejected,
        "result_invalid",
    ),
    (200, {}, js({"success": True}), ProviderRejected, "result_invalid"),
    (200, {}, js({"success": True, "image_url": ""}), ProviderRejected, "result_invalid"),
    (200, {}, js({"success": True, "image_url": 7}), ProviderRejected, "result_invalid"),
    (
        200,
        {},
        js({"success": True, "image_url": ["https://x"]}),
        ProviderRejected,
        "result_invalid",
    ),
    (
        200,
        {},
        js({"success": True, "image_url": "ftp://cdn/x.jpg"}),
        ProviderRejected,
        "result_invalid",
    ),
    (
        200,
        {},
        js({"success": True, "image_url": "/relative.jpg"}),
        ProviderRejected,
        "result_invalid",
    ),
]


@pytest.mark.parametrize(("code", "headers", "body", "error", "reason"), ERRORS)
def test_errors(
    code: int, headers: dict[str, str], body: bytes, error: type[ProviderError], reason: str | None
) -> None:
    with pytest.raises(ProviderError) as info:
        classify_submit(SUBMIT, code, headers, body, now=NOW)
    assert type(info.value) is error
    if reason is not None:
        assert isinstance(info.value, ProviderRejected)
        assert info.value.reason == reason


def test_messages_carry_code_and_text() -> None:
    with pytest.raises(ProviderRejected) as info:
        classify_submit(SUBMIT, 401, {}, failure("invalid_api_key", "The API key is revoked"))
    assert "invalid_api_key" in info.value.message
    assert "The API key is revoked" in info.value.message
    assert "HTTP 401" in info.value.message
    with pytest.raises(ProviderRejected) as info:
        classify_submit(SUBMIT, 400, {}, failure("invalid_scale", "x" * 50_000))
    assert len(info.value.message) < 2300
    with pytest.raises(ProviderRejected) as info:
        classify_submit(SUBMIT, 200, {}, js({"success": True}))
    assert "may have been billed" in info.value.message


# --- the daily quota -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, DEFAULT_QUOTA_RETRY_AFTER_S),
        ({"Retry-After": ""}, DEFAULT_QUOTA_RETRY_AFTER_S),
        ({"Retry-After": "120"}, 120.0),
        ({"retry-after": "0"}, 0.0),
        ({"Retry-After": "86400"}, 3600.0),  # at most an hour per attempt
        ({"Retry-After": "Thu, 01 Jan 2026 12:30:00 GMT"}, 1800.0),
    ],
)
def test_quota_429_waits_what_it_is_told_else_an_hour(
    headers: dict[str, str], expected: float
) -> None:
    assert DEFAULT_QUOTA_RETRY_AFTER_S == 3600.0
    for code, body in [
        (429, failure("rate_limit_exceeded")),
        (200, failure("rate_limit_exceeded")),
    ]:
        with pytest.raises(ProviderThrottled) as info:
            classify_submit(SUBMIT, code, headers, body, now=NOW)
        assert info.value.retry_after_s == expected
        assert info.value.retryable
        assert "daily quota" in info.value.message
    assert quota_retry_after(headers, now=NOW) == expected


# --- request ---------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 2.0, 2.5, 3, 4, 4.0])
def test_scales_from_2_to_4(scale: float) -> None:
    assert validate_artnex_options(scale, {}) == {}


@pytest.mark.parametrize("scale", [1, 1.99, 4.01, 8, 0, -2, float("nan"), float("inf"), True])
def test_other_scales_are_refused(scale: Any) -> None:
    with pytest.raises(RejectedInput, match="scale"):
        validate_artnex_options(scale, {})


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"image": "x"}, "job's image"),
        ({"scale": 4}, "job's scale"),
        ({"quality": "high"}, "takes no options"),
    ],
)
def test_options_are_refused(options: dict[str, Any], needle: str) -> None:
    with pytest.raises(RejectedInput, match=needle):
        validate_artnex_options(2, options)


@pytest.mark.parametrize(
    ("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")]
)
def test_bytes_become_a_data_uri(fmt: str, mime: str) -> None:
    data = encoded(fmt)
    value = image_field(SubmitRequest("j", 2.0, {}, image_url="https://x/y", image_bytes=data))
    prefix = f"data:{mime};base64,"
    assert value.startswith(prefix)
    assert base64.b64decode(value[len(prefix) :]) == data


def test_url_is_sent_as_is_and_scale_as_int() -> None:
    request = SubmitRequest("j", 4.0, {}, image_url="https://cdn.example/in.jpg")
    assert build_submit_body(request) == {"image": "https://cdn.example/in.jpg", "scale": 4}
    request = SubmitRequest("j", 2.5, {}, image_url="https://cdn.example/in.jpg")
    assert build_submit_body(request)["scale"] == 2.5


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (encoded("GIF"), "JPEG, PNG or WebP"),
        (encoded("BMP"), "JPEG, PNG or WebP"),
        (b"hello, not an image", "not recognised"),
        (encoded("PNG") + b"\0" * MAX_IMAGE_BYTES, "at most 10000000 bytes"),
    ],
)
def test_unsendable_bytes_are_refused_before_sending(data: bytes, needle: str) -> None:
    with pytest.raises(RejectedInput, match=needle):
        image_field(SubmitRequest("j", 2.0, {}, image_url=None, image_bytes=data))


def test_exactly_the_limit_is_fine_and_nothing_is_refused() -> None:
    png = encoded("PNG")
    data = png + b"\0" * (MAX_IMAGE_BYTES - len(png))
    assert image_field(SubmitRequest("j", 2.0, {}, image_url=None, image_bytes=data))
    with pytest.raises(RejectedInput, match="needs the image"):
        image_field(SubmitRequest("j", 2.0, {}, image_url=None))


# --- schema ----------------------------------------------------------------------------


def test_parse_answer_keeps_what_it_can() -> None:
    answer = parse_artnex_answer(
        {"success": 1, "image_url": 3, "error": {"message": "nested"}, "new": [1]}
    )
    assert answer.success is None
    assert answer.image_url is None
    assert answer.error is None
    assert answer.message == "nested"
    assert answer.raw["new"] == [1]
    answer = parse_artnex_answer({"success": False, "error": "Invalid_API_Key"})
    assert (answer.error, answer.message) == ("invalid_api_key", None)
    bad: object
    for bad in (None, [], "x", 1.5):
        with pytest.raises(RejectedPayload):
            parse_artnex_answer(bad)
