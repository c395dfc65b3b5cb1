"""Every documented Upsampler answer, mapped to what the orchestrator acts on."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.providers.http import DEFAULT_RETRY_AFTER_S, MAX_RETRY_AFTER_S, parse_retry_after
from orchestrator.providers.upsampler_answers import classify_status, classify_submit
from schemas.errors import (
    ProviderError,
    ProviderRejected,
    ProviderThrottled,
    ProviderUnavailable,
    ProviderUncertain,
)
from schemas.jobs import UpdateStatus

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def js(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# --- submit --------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["IN_QUEUE", "IN_PROGRESS", "in_queue", "SOMETHING_NEW"])
def test_submit_accepted(status: str) -> None:
    accepted = classify_submit(200, {}, js({"id": "a1b2", "status": status, "creditCost": 4}))
    assert accepted.provider_job_id == "a1b2"
    assert accepted.cost == 4.0
    assert accepted.update is None


@pytest.mark.parametrize("cost", [None, "4", [], True, -1, 1e400, "x"])
def test_submit_accepted_ignores_odd_credit_cost(cost: Any) -> None:
    body = {"id": "a1b2", "status": "IN_QUEUE"}
    if cost is not None:
        body["creditCost"] = cost
    raw = json.dumps(body).replace("Infinity", "1e400").encode()
    assert classify_submit(200, {}, raw).cost is None


def test_submit_success_in_answer_carries_the_update() -> None:
    body = js({"id": "j", "status": "SUCCESS", "imageUrl": "https://cdn/x.png", "creditCost": 2})
    accepted = classify_submit(200, {}, body)
    assert accepted.update is not None
    assert accepted.update.status is UpdateStatus.SUCCEEDED
    assert accepted.update.result_url == "https://cdn/x.png"


Case = tuple[int, dict[str, str], bytes, type[ProviderError], str | None]

SUBMIT_ERRORS: list[Case] = [
    # errors inside a 2xx
    (
        200,
        {},
        js({"status": "FAILED", "error": "Image too large"}),
        ProviderRejected,
        "provider_failed",
    ),
    (200, {}, js({"status": "FAILED", "error": {"code": 7}}), ProviderRejected, "provider_failed"),
    (200, {}, js({"id": "j", "status": "FAILED"}), ProviderRejected, "provider_failed"),
    (201, {}, js({"status": "failed", "error": 3}), ProviderRejected, "provider_failed"),
    # a 2xx we cannot read: the job may exist
    (200, {}, b"<html>ok</html>", ProviderUncertain, None),
    (200, {}, b"", ProviderUncertain, None),
    (200, {}, b"\xff\xfe", ProviderUncertain, None),
    (200, {}, js([1, 2]), ProviderUncertain, None),
    (200, {}, js({"status": "IN_QUEUE"}), ProviderUncertain, None),
    (200, {}, js({"id": 42, "status": "IN_QUEUE"}), ProviderUncertain, None),
    (200, {}, js({"id": "", "status": "IN_QUEUE"}), ProviderUncertain, None),
    (200, {}, js({"id": "j", "status": 1}), ProviderUncertain, None),
    # documented codes
    (
        400,
        {},
        js({"status": "FAILED", "error": "upscaleFactor out of range"}),
        ProviderRejected,
        "rejected_input",
    ),
    (400, {}, b"bad json", ProviderRejected, "rejected_input"),
    (401, {}, js({"error": "Invalid API key"}), ProviderRejected, "provider_auth"),
    (403, {}, js({"error": "Insufficient credits"}), ProviderRejected, "insufficient_credit"),
    (404, {}, b"Not Found", ProviderRejected, "provider_failed"),
    (429, {}, b"", ProviderThrottled, None),
    (500, {}, js({"error": "boom"}), ProviderUnavailable, None),
    (502, {}, b"<html>Bad Gateway</html>", ProviderUnavailable, None),
    (503, {}, b"", ProviderUnavailable, None),
    (504, {}, b"", ProviderUncertain, None),
    # undocumented codes
    (408, {}, b"", ProviderUnavailable, None),
    (599, {}, b"", ProviderUnavailable, None),
    (302, {"Location": "https://elsewhere"}, b"", ProviderRejected, "provider_failed"),
    (405, {}, b"", ProviderRejected, "provider_failed"),
    (422, {}, js({"error": "nope"}), ProviderRejected, "provider_failed"),
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


def test_submit_retryability_follows_the_error_class() -> None:
    for code, retryable in [(500, True), (503, True), (429, True), (400, False), (403, False)]:
        with pytest.raises(ProviderError) as info:
            classify_submit(code, {}, b"")
        assert info.value.retryable is retryable, code


def test_rejection_messages_carry_the_provider_message() -> None:
    with pytest.raises(ProviderRejected) as info:
        classify_submit(400, {}, js({"status": "FAILED", "error": "upscaleFactor out of range"}))
    assert "upscaleFactor out of range" in info.value.message

    with pytest.raises(ProviderRejected) as info:
        classify_submit(403, {}, js({"error": "Insufficient credits"}))
    assert "insufficient credits" in info.value.message.lower()
    assert "inactive" in info.value.message
    assert "Insufficient credits" in info.value.message

    with pytest.raises(ProviderRejected) as info:
        classify_submit(200, {}, js({"status": "FAILED", "error": {"message": "Bad image URL"}}))
    assert "Bad image URL" in info.value.message

    with pytest.raises(ProviderRejected) as info:
        classify_submit(200, {}, js({"status": "FAILED", "error": ["a", 1]}))
    assert '["a",1]' in info.value.message


def test_error_message_is_bounded() -> None:
    with pytest.raises(ProviderRejected) as info:
        classify_submit(400, {}, js({"error": "x" * 100_000}))
    assert len(info.value.message) < 2200


# --- Retry-After -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, DEFAULT_RETRY_AFTER_S),
        ({"Retry-After": "120"}, 120.0),
        ({"retry-after": "7"}, 7.0),
        ({"Retry-After": " 0 "}, 0.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"Retry-After": "999999"}, MAX_RETRY_AFTER_S),
        ({"Retry-After": "9" * 400}, DEFAULT_RETRY_AFTER_S),
        ({"Retry-After": "-5"}, DEFAULT_RETRY_AFTER_S),
        ({"Retry-After": "soon"}, DEFAULT_RETRY_AFTER_S),
        ({"Retry-After": ""}, DEFAULT_RETRY_AFTER_S),
        # HTTP-date, measured from our clock
        ({"Retry-After": "Thu, 01 Jan 2026 12:02:00 GMT"}, 120.0),
        # ... or from the answer's own Date header when there is one
        (
            {
                "Retry-After": "Thu, 01 Jan 2026 13:00:30 GMT",
                "Date": "Thu, 01 Jan 2026 13:00:00 GMT",
            },
            30.0,
        ),
        ({"Retry-After": "Thu, 01 Jan 2026 11:00:00 GMT"}, 0.0),  # in the past
        ({"Retry-After": "Sun, 06 Nov 2094 08:49:37 GMT"}, MAX_RETRY_AFTER_S),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


def test_retry_after_date_without_any_reference_uses_the_default() -> None:
    assert parse_retry_after({"Retry-After": "Thu, 01 Jan 2026 12:02:00 GMT"}) == 60.0


@pytest.mark.parametrize("classify", ["submit", "status"])
def test_429_is_throttled_with_retry_after(classify: str) -> None:
    with pytest.raises(ProviderThrottled) as info:
        if classify == "submit":
            classify_submit(429, {"Retry-After": "30"}, b"queue full", now=NOW)
        else:
            classify_status(429, {"Retry-After": "30"}, b"queue full", now=NOW)
    assert info.value.retry_after_s == 30.0
    assert info.value.retryable


# --- status --------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["IN_QUEUE", "IN_PROGRESS", "PENDING", "", "CANCELLED?"])
def test_status_not_terminal(status: str) -> None:
    update = classify_status(200, {}, js({"id": "j", "status": status}))
    assert update.status is UpdateStatus.RUNNING
    assert update.provider == "upsampler"
    assert update.provider_job_id == "j"
    assert update.failure is None
    assert update.result_url is None


def test_status_success_prefers_full_quality_png() -> None:
    body = {
        "id": "j",
        "status": "SUCCESS",
        "imageUrl": "https://cdn/full.png",
        "compressedImageUrl": "https://cdn/small.jpg",
        "creditCost": 4,
        "somethingNew": {"x": 1},
    }
    update = classify_status(200, {}, js(body))
    assert update.status is UpdateStatus.SUCCEEDED
    assert update.result_url == "https://cdn/full.png"
    assert update.cost == 4.0
    assert update.raw == body


@pytest.mark.parametrize("image_url", [None, "", 17])
def test_status_success_falls_back_to_compressed(image_url: Any) -> None:
    body: dict[str, Any] = {
        "id": "j",
        "status": "SUCCESS",
        "compressedImageUrl": "https://cdn/small.jpg",
    }
    if image_url is not None:
        body["imageUrl"] = image_url
    update = classify_status(200, {}, js(body))
    assert update.status is UpdateStatus.SUCCEEDED
    assert update.result_url == "https://cdn/small.jpg"


def test_status_success_without_url_fails() -> None:
    update = classify_status(200, {}, js({"id": "j", "status": "SUCCESS", "creditCost": 1}))
    assert update.status is UpdateStatus.FAILED
    assert update.failure is not None
    assert update.failure.reason == "provider_failed"
    assert "no result URL" in update.failure.message


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ("Failed to process image. Your credits have been refunded.", "credits have been refunded"),
        ({"message": "GPU on fire"}, "GPU on fire"),
        (12, "12"),
        (None, "Upsampler reported FAILED"),
        ("   ", "Upsampler reported FAILED"),
    ],
)
def test_status_failed(error: Any, message: str) -> None:
    body: dict[str, Any] = {"id": "j", "status": "FAILED"}
    if error is not None:
        body["error"] = error
    update = classify_status(200, {}, js(body))
    assert update.status is UpdateStatus.FAILED
    assert update.failure is not None
    assert update.failure.reason == "provider_failed"
    assert message in update.failure.message


def test_status_404_is_a_failed_update() -> None:
    update = classify_status(404, {}, js({"error": "Job not found"}), job_id="gone")
    assert update.status is UpdateStatus.FAILED
    assert update.provider_job_id == "gone"
    assert update.failure is not None
    assert update.failure.reason == "provider_failed"
    assert "does not know the job" in update.failure.message
    assert "Job not found" in update.failure.message


def test_status_fills_a_missing_id_and_refuses_another_one() -> None:
    update = classify_status(200, {}, js({"status": "FAILED", "error": "x"}), job_id="j")
    assert update.provider_job_id == "j"
    assert update.status is UpdateStatus.FAILED
    with pytest.raises(ProviderUnavailable):
        classify_status(200, {}, js({"id": "other", "status": "SUCCESS"}), job_id="j")


STATUS_ERRORS: list[Case] = [
    (200, {}, b"not json", ProviderUnavailable, None),
    (200, {}, b"", ProviderUnavailable, None),
    (200, {}, js({"status": "SUCCESS"}), ProviderUnavailable, None),  # no id, none asked for
    (200, {}, js({"id": "j", "status": None}), ProviderUnavailable, None),
    (200, {}, js("SUCCESS"), ProviderUnavailable, None),
    (400, {}, b"", ProviderRejected, "rejected_input"),
    (401, {}, b"", ProviderRejected, "provider_auth"),
    (403, {}, b"", ProviderRejected, "insufficient_credit"),
    (500, {}, b"", ProviderUnavailable, None),
    (502, {}, b"", ProviderUnavailable, None),
    (503, {}, b"", ProviderUnavailable, None),
    (504, {}, b"", ProviderUnavailable, None),  # a poll is harmless to repeat
    (418, {}, b"", ProviderRejected, "provider_failed"),
]


@pytest.mark.parametrize(("code", "headers", "body", "error", "reason"), STATUS_ERRORS)
def test_status_errors(
    code: int, headers: dict[str, str], body: bytes, error: type[ProviderError], reason: str | None
) -> None:
    with pytest.raises(ProviderError) as info:
        classify_status(code, headers, body, now=NOW)
    assert type(info.value) is error
    if reason is not None:
        assert isinstance(info.value, ProviderRejected)
        assert info.value.reason == reason
