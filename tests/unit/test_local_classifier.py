"""The local adapter's pure decisions: options, submit body, answers, callbacks."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.providers.base import SubmitRequest
from orchestrator.providers.local import (
    INPUT_ERROR_CODES,
    LocalProvider,
    build_submit_body,
    classify_status,
    classify_submit,
    job_path,
    parse_callback_body,
    validate_local_options,
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
from schemas.jobs import FailureReason, Operation, UpdateStatus

ENGINES = ["pyanime4k", "lanczos"]
HOOK = "http://127.0.0.1:8000/callbacks/local/signed-token"


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def job(**fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": "j1",
        "status": "QUEUED",
        "engine": "lanczos",
        "scale": 2,
        "result_url": None,
        "width": None,
        "height": None,
        "error": None,
    }
    payload.update(fields)
    return payload


def make_request(**overrides: Any) -> SubmitRequest:
    fields: dict[str, Any] = {
        "job_id": "job-1",
        "scale": 2.0,
        "options": {},
        "image_url": "http://127.0.0.1:8000/inputs/signed",
        "image_bytes": None,
        "callback_url": HOOK,
    }
    fields.update(overrides)
    return SubmitRequest(**fields)


# --- options -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scale", "options", "expected"),
    [
        (2, {}, {}),
        (1, {"engine": "lanczos"}, {"engine": "lanczos"}),
        (8.0, {"engine": "pyanime4k"}, {"engine": "pyanime4k"}),
        (2.5, {}, {}),
    ],
)
def test_valid_options(scale: float, options: dict[str, Any], expected: dict[str, Any]) -> None:
    assert validate_local_options(scale, options, ENGINES) == expected


@pytest.mark.parametrize(
    ("scale", "options", "match"),
    [
        (0.99, {}, "scale must be between 1 and 8"),
        (8.01, {}, "scale must be between 1 and 8"),
        (float("nan"), {}, "scale must be a number"),
        (True, {}, "scale must be a number"),
        ("2", {}, "scale must be a number"),
        (2, {"engine": "realesrgan"}, "must be one of: pyanime4k, lanczos"),
        (2, {"engine": 3}, "must be one of"),
        (2, {"endpoint": "smart"}, "unknown option 'endpoint'"),
        (2, {"engine": "lanczos", "denoise": 1}, "unknown option 'denoise'"),
        (2, ["engine"], "options must be a JSON object"),
    ],
)
def test_invalid_options(scale: Any, options: Any, match: str) -> None:
    with pytest.raises(RejectedInput, match=match):
        validate_local_options(scale, options, ENGINES)


# --- submit body ---------------------------------------------------------------------


def test_submit_body_sends_bytes_inline_and_the_webhook() -> None:
    request = make_request(image_bytes=b"\x89PNG data", scale=3.0)

    sent = build_submit_body(request, {"engine": "lanczos"})

    assert sent == {
        "image_base64": base64.b64encode(b"\x89PNG data").decode(),
        "scale": 3,
        "engine": "lanczos",
        "webhook": HOOK,
    }


def test_submit_body_falls_back_to_the_url() -> None:
    sent = build_submit_body(make_request(scale=2.5, callback_url=None), {})

    assert sent == {"image_url": "http://127.0.0.1:8000/inputs/signed", "scale": 2.5}


def test_submit_body_without_any_image_is_rejected_input() -> None:
    with pytest.raises(ProviderRejected) as info:
        build_submit_body(make_request(image_url=None), {})
    assert info.value.reason == FailureReason.REJECTED_INPUT


def test_replace_body_sends_prompt_and_mask_inline_and_neither_scale_nor_engine() -> None:
    request = make_request(
        image_bytes=b"\x89PNG image",
        operation=Operation.REPLACE,
        prompt="  a red sofa ",
        mask_bytes=b"\x89PNG mask",
        mask_url="http://127.0.0.1:8000/inputs/mask-signed",
    )

    sent = build_submit_body(request, {"engine": "lanczos"})

    assert sent == {
        "image_base64": base64.b64encode(b"\x89PNG image").decode(),
        "operation": "replace",
        "prompt": "a red sofa",
        "mask_base64": base64.b64encode(b"\x89PNG mask").decode(),
        "webhook": HOOK,
    }


def test_replace_body_falls_back_to_the_mask_url() -> None:
    request = make_request(
        operation=Operation.REPLACE,
        prompt="sky",
        mask_url="http://127.0.0.1:8000/inputs/mask-signed",
        callback_url=None,
    )

    sent = build_submit_body(request, {})

    assert sent == {
        "image_url": "http://127.0.0.1:8000/inputs/signed",
        "operation": "replace",
        "prompt": "sky",
        "mask_url": "http://127.0.0.1:8000/inputs/mask-signed",
    }


@pytest.mark.parametrize(
    ("prompt", "mask", "match"),
    [(None, b"mask", "prompt"), ("   ", b"mask", "prompt"), ("sky", None, "mask")],
)
def test_replace_without_prompt_or_mask_is_rejected_input(
    prompt: str | None, mask: bytes | None, match: str
) -> None:
    request = make_request(operation=Operation.REPLACE, prompt=prompt, mask_bytes=mask)

    with pytest.raises(ProviderRejected, match=match) as info:
        build_submit_body(request, {})
    assert info.value.reason == FailureReason.REJECTED_INPUT


def test_the_adapter_offers_upscale_and_replace() -> None:
    assert LocalProvider.operations == {Operation.UPSCALE, Operation.REPLACE}


# --- submit answers ------------------------------------------------------------------


def test_accepted_job() -> None:
    accepted = classify_submit(200, {}, body({"id": "abc", "status": "QUEUED"}))

    assert (accepted.provider_job_id, accepted.update, accepted.cost) == ("abc", None, None)


def test_submit_answer_already_terminal_carries_the_update() -> None:
    answer = body(job(status="SUCCEEDED", result_url="http://127.0.0.1/r.png"))

    accepted = classify_submit(200, {}, answer)

    assert accepted.update is not None
    assert accepted.update.status is UpdateStatus.SUCCEEDED


@pytest.mark.parametrize("answer", [b"", b"<html>", body([]), body({"status": "QUEUED"})])
def test_unreadable_2xx_submit_is_uncertain(answer: bytes) -> None:
    with pytest.raises(ProviderUncertain):
        classify_submit(200, {}, answer)


def error_body(code: str, message: str = "details") -> bytes:
    return body({"error": {"code": code, "message": message}})


SUBMIT_ERRORS: list[tuple[int, dict[str, str], bytes, type[ProviderError], str | None]] = [
    (400, {}, error_body("unknown_engine"), ProviderRejected, FailureReason.REJECTED_INPUT),
    (400, {}, error_body("input_too_large"), ProviderRejected, FailureReason.REJECTED_INPUT),
    (413, {}, error_body("payload_too_large"), ProviderRejected, FailureReason.REJECTED_INPUT),
    (401, {}, error_body("unauthorized"), ProviderRejected, FailureReason.PROVIDER_AUTH),
    (404, {}, b"Not Found", ProviderRejected, FailureReason.PROVIDER_FAILED),
    (429, {"Retry-After": "2"}, error_body("busy"), ProviderThrottled, None),
    (408, {}, b"", ProviderUnavailable, None),
    (500, {}, b"Internal Server Error", ProviderUnavailable, None),
    (503, {}, error_body("not_ready"), ProviderUnavailable, None),
    (504, {}, b"", ProviderUncertain, None),
]


@pytest.mark.parametrize(("status", "headers", "answer", "error", "reason"), SUBMIT_ERRORS)
def test_submit_errors(
    status: int,
    headers: dict[str, str],
    answer: bytes,
    error: type[ProviderError],
    reason: str | None,
) -> None:
    with pytest.raises(ProviderError) as info:
        classify_submit(status, headers, answer)
    assert type(info.value) is error
    if reason is not None:
        assert isinstance(info.value, ProviderRejected)
        assert info.value.reason == reason


def test_rejection_message_names_the_servers_code_and_message() -> None:
    with pytest.raises(ProviderRejected) as info:
        classify_submit(400, {}, error_body("input_too_large", "input image of 9x9 is too big"))
    assert "input_too_large" in info.value.message
    assert "input image of 9x9 is too big" in info.value.message


def test_throttled_waits_as_told_or_a_minute() -> None:
    with pytest.raises(ProviderThrottled) as told:
        classify_submit(429, {"Retry-After": "2"}, error_body("busy"))
    with pytest.raises(ProviderThrottled) as untold:
        classify_submit(429, {}, error_body("busy"))
    assert (told.value.retry_after_s, untold.value.retry_after_s) == (2.0, 60.0)


# --- status answers ------------------------------------------------------------------


def test_status_404_is_a_failed_update() -> None:
    update = classify_status(404, {}, error_body("not_found", "no such job"), job_id="j1")

    assert (update.status, update.provider_job_id) == (UpdateStatus.FAILED, "j1")
    assert update.failure is not None
    assert update.failure.reason == FailureReason.PROVIDER_FAILED


@pytest.mark.parametrize("status", ["QUEUED", "RUNNING", "PAUSED"])
def test_status_not_terminal_is_running(status: str) -> None:
    update = classify_status(200, {}, body(job(status=status)), job_id="j1")

    assert update.status is UpdateStatus.RUNNING


def test_status_succeeded() -> None:
    answer = job(status="SUCCEEDED", result_url="http://127.0.0.1/local/results/t.png")

    update = classify_status(200, {}, body(answer), job_id="j1")

    assert update.status is UpdateStatus.SUCCEEDED
    assert update.result_url == "http://127.0.0.1/local/results/t.png"
    assert update.raw == answer


@pytest.mark.parametrize("answer", [b"{", body({"status": "RUNNING"}), body(job(id="other"))])
def test_unusable_status_answers_mean_ask_again(answer: bytes) -> None:
    with pytest.raises(ProviderUnavailable):
        classify_status(200, {}, answer, job_id="j1")


def test_status_server_errors() -> None:
    with pytest.raises(ProviderUnavailable):
        classify_status(502, {}, b"Bad Gateway", job_id="j1")
    with pytest.raises(ProviderThrottled):
        classify_status(429, {"Retry-After": "1"}, b"", job_id="j1")
    with pytest.raises(ProviderRejected) as info:
        classify_status(401, {}, error_body("unauthorized"), job_id="j1")
    assert info.value.reason == FailureReason.PROVIDER_AUTH


@pytest.mark.parametrize(
    ("job_id", "path"),
    [
        ("abc", "/api/v1/jobs/abc"),
        ("a/b?c", "/api/v1/jobs/a%2Fb%3Fc"),
        ("..", "/api/v1/jobs/%2E%2E"),
    ],
)
def test_job_path_keeps_the_id_one_segment(job_id: str, path: str) -> None:
    assert job_path(job_id) == path


# --- callbacks -----------------------------------------------------------------------


def test_callback_succeeded() -> None:
    payload = job(
        status="SUCCEEDED", result_url="http://127.0.0.1/local/results/t.png", width=80, height=60
    )

    update = parse_callback_body(body(payload))

    assert update.provider == "local"
    assert (update.status, update.provider_job_id) == (UpdateStatus.SUCCEEDED, "j1")
    assert update.result_url == "http://127.0.0.1/local/results/t.png"


def test_callback_succeeded_without_url_is_failed() -> None:
    update = parse_callback_body(body(job(status="SUCCEEDED", result_url=42)))

    assert update.status is UpdateStatus.FAILED
    assert update.failure is not None
    assert update.failure.reason == FailureReason.PROVIDER_FAILED
    assert "no result URL" in update.failure.message


@pytest.mark.parametrize("code", sorted(INPUT_ERROR_CODES))
def test_callback_failed_on_input_is_rejected_input(code: str) -> None:
    error = {"code": code, "message": "bad input"}

    update = parse_callback_body(body(job(status="FAILED", error=error)))

    assert update.status is UpdateStatus.FAILED
    assert update.failure is not None
    assert (update.failure.reason, update.failure.message) == (
        FailureReason.REJECTED_INPUT,
        "bad input",
    )


@pytest.mark.parametrize(
    "error",
    [
        {"code": "engine_failed", "message": "pyanime4k failed"},
        {"code": "worker_crashed", "message": "the worker process died"},
        {"code": "something_new", "message": "?"},
        "a plain string",
        None,
        {"message": "no code"},
    ],
)
def test_callback_failed_otherwise_is_provider_failed(error: object) -> None:
    update = parse_callback_body(body(job(status="FAILED", error=error)))

    assert update.status is UpdateStatus.FAILED
    assert update.failure is not None
    assert update.failure.reason == FailureReason.PROVIDER_FAILED
    assert update.failure.message


def test_callback_status_is_read_leniently() -> None:
    update = parse_callback_body(body(job(status=" succeeded ", result_url="http://h/r.png")))

    assert update.status is UpdateStatus.SUCCEEDED


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"null",
        b"[]",
        b'{"status": "SUCCEEDED"}',
        body(job(id="")),
        body(job(id=7)),
        body(job(id="x" * 600)),
        body(job(status=None)),
        b'{"id": "j1", "status": NaN}',
        b"\xff\xfe",
        b"[" * 100_000,
    ],
)
def test_unparseable_callbacks_are_rejected_payloads(raw: bytes) -> None:
    with pytest.raises(RejectedPayload):
        parse_callback_body(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_rejected_payload(raw: bytes) -> None:
    with contextlib.suppress(RejectedPayload):
        parse_callback_body(raw)


@given(json_values)
def test_any_json_parses_or_raises_rejected_payload(value: object) -> None:
    with contextlib.suppress(RejectedPayload):
        parse_callback_body(json.dumps(value).encode())


@given(
    st.fixed_dictionaries(
        {"id": json_values | st.text(min_size=1), "status": json_values | st.text()},
        optional={
            "result_url": json_values,
            "width": json_values,
            "height": json_values,
            "error": json_values
            | st.fixed_dictionaries({"code": json_values, "message": json_values}),
        },
    )
)
def test_payload_shaped_json_parses_or_raises_rejected_payload(value: dict[str, Any]) -> None:
    try:
        update = parse_callback_body(json.dumps(value).encode())
    except RejectedPayload:
        return
    assert update.provider_job_id == value["id"]
    if update.status is UpdateStatus.FAILED:
        assert update.failure is not None


# --- the adapter's edges -------------------------------------------------------------


def raising(exc: Exception) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("exc", "on_submit"),
    [
        (httpx.ConnectError("refused"), ProviderUnavailable),
        (httpx.ConnectTimeout("slow"), ProviderUnavailable),
        (httpx.ReadTimeout("no answer"), ProviderUncertain),
        (httpx.RemoteProtocolError("cut"), ProviderUncertain),
    ],
)
async def test_transport_errors_are_translated(
    exc: Exception, on_submit: type[ProviderError]
) -> None:
    async with httpx.AsyncClient(transport=raising(exc)) as client:
        provider = LocalProvider(
            client, base_url="http://127.0.0.1:9/local", api_key="k", engines=ENGINES
        )
        with pytest.raises(on_submit) as submitted:
            await provider.submit(make_request(image_bytes=b"png"))
        with pytest.raises(ProviderUnavailable):
            await provider.poll("j1")
    assert submitted.value.__cause__ is exc


async def test_adapter_sends_the_key_and_the_body_and_hides_the_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.host == "127.0.0.1"
        seen.append(request)
        return httpx.Response(200, json={"id": "abc", "status": "QUEUED"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        provider = LocalProvider(
            client, base_url="http://127.0.0.1:9/local/", api_key="secret-key", engines=ENGINES
        )
        accepted = await provider.submit(
            make_request(image_bytes=b"png", options={"engine": "lanczos"})
        )

    assert accepted.provider_job_id == "abc"
    (request,) = seen
    assert str(request.url) == "http://127.0.0.1:9/local/api/v1/upscale"
    assert request.headers["authorization"] == "Bearer secret-key"
    assert json.loads(request.content)["engine"] == "lanczos"
    assert "secret-key" not in repr(provider)
    assert (provider.name, provider.callback_mode, provider.needs_image_url) == (
        "local",
        "job",
        False,
    )


async def test_options_the_adapter_refuses_never_reach_the_server() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        provider = LocalProvider(
            client, base_url="http://127.0.0.1:9", api_key="k", engines=ENGINES
        )
        with pytest.raises(ProviderRejected) as info:
            await provider.submit(make_request(options={"engine": "realesrgan"}))
    assert info.value.reason == FailureReason.REJECTED_INPUT
