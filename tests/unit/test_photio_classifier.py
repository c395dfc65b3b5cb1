"""Every Photio answer we know of, mapped to what the orchestrator acts on."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from PIL import Image

from orchestrator.providers.base import SubmitRequest
from orchestrator.providers.photio import (
    build_submit_body,
    classify_submit,
    validate_photio_options,
)
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
from schemas.photio import decode_image_body, parse_photio_answer, strip_data_uri

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
SUBMIT = "job_01test"


def make_png(width: int = 8, height: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buf, format="PNG")
    return buf.getvalue()


PNG = make_png()
B64 = base64.b64encode(PNG).decode()


def js(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# --- success ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        B64,
        "data:image/png;base64," + B64,
        "DATA:image/png;BASE64," + B64,
        "data:application/octet-stream;base64," + B64,
        "\n".join(B64[i : i + 76] for i in range(0, len(B64), 76)),  # MIME line wrapping
        B64.rstrip("="),  # padding dropped
        base64.urlsafe_b64encode(PNG).decode(),
    ],
)
def test_success_carries_the_decoded_image(body: str) -> None:
    answer = js({"status_code": 200, "body": body})
    accepted = classify_submit(SUBMIT, 200, {}, answer)
    assert accepted.update is not None
    update = accepted.update
    assert update.status is UpdateStatus.SUCCEEDED
    assert update.result_bytes == PNG
    assert update.result_url is None
    assert update.provider == "photio"
    assert update.provider_job_id == accepted.provider_job_id
    assert accepted.provider_job_id.startswith("photio-")
    assert accepted.cost is None
    # the stored raw answer never holds the image itself
    assert B64[:100] not in json.dumps(update.raw)


def test_success_id_is_unique_per_submit_not_per_answer() -> None:
    answer = js({"status_code": 200, "body": B64})
    one = classify_submit(SUBMIT, 200, {}, answer)
    again = classify_submit(SUBMIT, 200, {}, answer)
    # The same input twice gets the same answer: each job keeps an id of its own.
    other_job = classify_submit("job_01other", 200, {}, answer)
    other_answer = classify_submit(
        SUBMIT, 200, {}, js({"status_code": 200, "body": "data:image/png;base64," + B64})
    )
    assert one.provider_job_id == again.provider_job_id
    assert one.provider_job_id != other_job.provider_job_id
    assert one.provider_job_id != other_answer.provider_job_id


@pytest.mark.parametrize("code", ["200", " 200 ", 200.0])
def test_status_code_spelled_otherwise_is_accepted(code: Any) -> None:
    accepted = classify_submit(
        SUBMIT, 201, {}, js({"status_code": code, "body": B64, "extra": [1]})
    )
    assert accepted.update is not None and accepted.update.result_bytes == PNG


def test_jpeg_and_webp_results_are_recognised() -> None:
    for fmt in ("JPEG", "WEBP"):
        buf = io.BytesIO()
        Image.new("RGB", (4, 4)).save(buf, format=fmt)
        answer = js({"status_code": 200, "body": base64.b64encode(buf.getvalue()).decode()})
        update = classify_submit(SUBMIT, 200, {}, answer).update
        assert update is not None and update.result_bytes == buf.getvalue()


# --- errors ----------------------------------------------------------------------------

Case = tuple[int, dict[str, str], bytes, type[ProviderError], str | None]

ERRORS: list[Case] = [
    # documented status_code values inside an HTTP 200
    (200, {}, js({"status_code": 401, "body": "invalid key"}), ProviderRejected, "provider_auth"),
    (200, {}, js({"status_code": 500, "body": ""}), ProviderRejected, "provider_failed"),
    (200, {}, js({"status_code": 500}), ProviderRejected, "provider_failed"),
    # undocumented ones, read like HTTP statuses
    (200, {}, js({"status_code": 402, "body": "pay"}), ProviderRejected, "insufficient_credit"),
    (
        200,
        {},
        js({"status_code": 400, "message": "Not enough credits"}),
        ProviderRejected,
        "insufficient_credit",
    ),
    (200, {}, js({"status_code": 400, "body": "bad image"}), ProviderRejected, "rejected_input"),
    (200, {}, js({"status_code": 422}), ProviderRejected, "rejected_input"),
    (200, {}, js({"status_code": 403}), ProviderRejected, "provider_auth"),
    (200, {}, js({"status_code": 429}), ProviderThrottled, None),
    (200, {}, js({"status_code": 503}), ProviderRejected, "provider_failed"),
    (200, {}, js({"status_code": 418}), ProviderRejected, "provider_failed"),
    # a 2xx without a usable image: answered, maybe billed, final
    (200, {}, b"", ProviderRejected, "result_invalid"),
    (200, {}, b"<html>ok</html>", ProviderRejected, "result_invalid"),
    (200, {}, b"\xff\xfe", ProviderRejected, "result_invalid"),
    (200, {}, js([200, B64]), ProviderRejected, "result_invalid"),
    (200, {}, js({"body": B64}), ProviderRejected, "result_invalid"),
    (200, {}, js({"status_code": True, "body": B64}), ProviderRejected, "result_invalid"),
    (200, {}, js({"status_code": "OK", "body": B64}), ProviderRejected, "result_invalid"),
    (200, {}, js({"status_code": 200}), ProviderRejected, "result_invalid"),
    (200, {}, js({"status_code": 200, "body": None}), ProviderRejected, "result_invalid"),
    (200, {}, js({"status_code": 200, "body": ""}), ProviderRejected, "result_invalid"),
    (200, {}, js({"status_code": 200, "body": 12}), ProviderRejected, "result_invalid"),
    (200, {}, js({"status_code": 200, "body": "not base64!"}), ProviderRejected, "result_invalid"),
    (200, {}, js({"status_code": 200, "body": B64[:-3]}), ProviderRejected, "result_invalid"),
    (
        200,
        {},
        js({"status_code": 200, "body": "data:image/png;base64,"}),
        ProviderRejected,
        "result_invalid",
    ),
    (
        200,
        {},
        js({"status_code": 200, "body": base64.b64encode(b"CORRUPT!" * 10).decode()}),
        ProviderRejected,
        "result_invalid",
    ),
    (200, {}, js({"status_code": 200, "body": "ünïcode"}), ProviderRejected, "result_invalid"),
    # HTTP statuses
    (401, {}, js({"status_code": 401, "body": "bad key"}), ProviderRejected, "provider_auth"),
    (403, {}, b"Forbidden", ProviderRejected, "provider_auth"),
    (402, {}, b"", ProviderRejected, "insufficient_credit"),
    (403, {}, js({"message": "insufficient balance"}), ProviderRejected, "insufficient_credit"),
    (400, {}, js({"status_code": 400, "body": "upscale_by"}), ProviderRejected, "rejected_input"),
    (413, {}, b"Request Entity Too Large", ProviderRejected, "rejected_input"),
    (422, {}, js({"detail": [{"loc": ["body", "image"]}]}), ProviderRejected, "rejected_input"),
    (429, {}, b"", ProviderThrottled, None),
    (500, {}, js({"status_code": 500, "body": "API problem"}), ProviderRejected, "provider_failed"),
    (500, {}, b"<html>Internal Server Error</html>", ProviderRejected, "provider_failed"),
    (502, {}, b"<html>Bad Gateway</html>", ProviderUncertain, None),
    (504, {}, b"", ProviderUncertain, None),
    (520, {}, b"", ProviderUncertain, None),
    (503, {}, b"", ProviderUnavailable, None),
    (408, {}, b"", ProviderUnavailable, None),
    (404, {}, b"Not Found", ProviderRejected, "provider_failed"),
    (405, {}, b"", ProviderRejected, "provider_failed"),
    (302, {"Location": "https://elsewhere"}, b"", ProviderRejected, "provider_failed"),
    # the HTTP status wins over a body that claims success
    (500, {}, js({"status_code": 200, "body": B64}), ProviderRejected, "provider_failed"),
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


def test_only_unavailable_and_throttled_are_retried() -> None:
    retryable = {}
    for code in (400, 401, 402, 408, 429, 500, 502, 503, 504):
        with pytest.raises(ProviderError) as info:
            classify_submit(SUBMIT, code, {}, b"")
        retryable[code] = info.value.retryable
    assert retryable == {
        400: False,
        401: False,
        402: False,
        408: True,
        429: True,
        500: False,  # may have been billed: do not resend blindly
        502: False,
        503: True,
        504: False,
    }


def test_billed_outcomes_say_so() -> None:
    for code, body in [
        (500, b""),
        (502, b""),
        (200, js({"status_code": 200, "body": "%%%"})),
        (200, b"nope"),
    ]:
        with pytest.raises(ProviderError) as info:
            classify_submit(SUBMIT, code, {}, body)
        assert "may have been billed" in info.value.message, code


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "17"}, 17.0),
        ({"retry-after": "Thu, 01 Jan 2026 12:01:00 GMT"}, 60.0),
        ({}, 60.0),
        ({"Retry-After": "later"}, 60.0),
    ],
)
def test_429_retry_after(headers: dict[str, str], expected: float) -> None:
    for code, body in [(429, b""), (200, js({"status_code": 429}))]:
        with pytest.raises(ProviderThrottled) as info:
            classify_submit(SUBMIT, code, headers, body, now=NOW)
        assert info.value.retry_after_s == expected
        assert info.value.retryable


def test_messages_carry_the_provider_message_bounded() -> None:
    with pytest.raises(ProviderRejected) as info:
        classify_submit(SUBMIT, 200, {}, js({"status_code": 401, "body": "API key is not valid"}))
    assert "API key is not valid" in info.value.message
    assert "status_code 401" in info.value.message
    with pytest.raises(ProviderRejected) as info:
        classify_submit(SUBMIT, 400, {}, js({"status_code": 400, "body": "x" * 100_000}))
    assert len(info.value.message) < 2300
    with pytest.raises(ProviderRejected) as info:
        classify_submit(SUBMIT, 500, {}, b"upstream \n\t exploded")
    assert "upstream exploded" in info.value.message


def test_max_bytes_is_respected_for_the_json_decode() -> None:
    answer = js({"status_code": 200, "body": B64})
    assert classify_submit(SUBMIT, 200, {}, answer, max_bytes=len(answer)).update is not None
    with pytest.raises(ProviderRejected) as info:
        classify_submit(SUBMIT, 200, {}, answer, max_bytes=len(answer) - 1)
    assert info.value.reason == "result_invalid"


# --- options and body ------------------------------------------------------------------


def test_valid_options_are_normalised() -> None:
    options = {
        "prompt": "a cat",
        "negative_prompt": "",
        "quality": "middle",
        "denoising_strength": 1,
    }
    assert validate_photio_options(4, options) == {
        "prompt": "a cat",
        "negative_prompt": "",
        "quality": "MIDDLE",
        "denoising_strength": 1.0,
    }
    assert validate_photio_options(2.0, {}) == {}


@pytest.mark.parametrize("scale", [1, 3, 8, 2.5, 0, -2, float("nan"), True])
def test_scale_must_be_2_or_4(scale: Any) -> None:
    with pytest.raises(RejectedInput, match="2 or 4"):
        validate_photio_options(scale, {})


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"quality": "ULTRA"}, "quality"),
        ({"quality": 1}, "quality"),
        ({"denoising_strength": 1.5}, "denoising_strength"),
        ({"denoising_strength": -0.1}, "denoising_strength"),
        ({"denoising_strength": "0.2"}, "denoising_strength"),
        ({"denoising_strength": True}, "denoising_strength"),
        ({"denoising_strength": float("inf")}, "denoising_strength"),
        ({"prompt": 3}, "prompt"),
        ({"negative_prompt": None}, "negative_prompt"),
        ({"prompt": "x" * 2001}, "at most 2000"),
        ({"image": "x"}, "job's image"),
        ({"upscale_by": 4}, "job's scale"),
        ({"seed": 1}, "unknown option 'seed'"),
    ],
)
def test_bad_options(options: dict[str, Any], needle: str) -> None:
    with pytest.raises(RejectedInput, match=needle):
        validate_photio_options(2, options)


def test_body_sends_bytes_as_plain_base64_else_the_url() -> None:
    request = SubmitRequest("j", 4.0, {}, image_url="https://x/in.png", image_bytes=PNG)
    body = build_submit_body(request, {"quality": "HIGH"})
    assert body == {"image": B64, "upscale_by": 4, "quality": "HIGH"}
    assert isinstance(body["upscale_by"], int)
    request = SubmitRequest("j", 2.0, {}, image_url="https://x/in.png")
    assert build_submit_body(request, {}) == {"image": "https://x/in.png", "upscale_by": 2}
    with pytest.raises(ProviderRejected) as info:
        build_submit_body(SubmitRequest("j", 2.0, {}, image_url=None), {})
    assert info.value.reason == "rejected_input"


# --- schema helpers --------------------------------------------------------------------


def test_parse_answer_is_lenient_but_needs_an_object() -> None:
    answer = parse_photio_answer({"status_code": 500, "body": {"why": "x"}})
    assert answer.status_code == 500
    assert answer.body is None
    assert answer.message == '{"why":"x"}'
    bad: object
    for bad in (None, [], "x", 3):
        with pytest.raises(RejectedPayload):
            parse_photio_answer(bad)


def test_strip_data_uri_only_strips_a_prefix() -> None:
    assert strip_data_uri("data:image/webp;base64,AAAA") == "AAAA"
    assert strip_data_uri("AAAA") == "AAAA"
    assert strip_data_uri("xdata:image/png;base64,AAAA") == "xdata:image/png;base64,AAAA"


@pytest.mark.parametrize("text", ["", "   ", "====", "A", "AAAAA", "AA=A", "!!!!", "data:;base64,"])
def test_decode_image_body_rejects_junk(text: str) -> None:
    with pytest.raises(RejectedPayload):
        decode_image_body(text)
