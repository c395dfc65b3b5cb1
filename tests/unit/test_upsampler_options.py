"""Options and scale per Upsampler endpoint, and the submit body built from them."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.providers.base import SubmitRequest
from orchestrator.providers.upsampler import build_submit_body
from orchestrator.providers.upsampler_options import validate_upsampler_options
from schemas.errors import ProviderRejected, RejectedInput


def make_request(**overrides: Any) -> SubmitRequest:
    fields: dict[str, Any] = {
        "job_id": "job-42",
        "scale": 2.0,
        "options": {},
        "image_url": "https://cdn.example/in.jpg",
        "callback_url": "https://orchestrator.example/hooks/upsampler/job-42?t=secret",
    }
    fields.update(overrides)
    return SubmitRequest(**fields)


def test_defaults_to_precise() -> None:
    assert validate_upsampler_options(4.0, {}) == {"endpoint": "precise"}


@pytest.mark.parametrize(
    ("endpoint", "scale"),
    [
        ("smart", 1.0),
        ("smart", 4.0),
        ("dynamic", 2.5),
        ("precise", 1.0),
        ("precise", 16.0),
        ("precise", 12.5),
        ("precise", 3),
    ],
)
def test_scale_in_range(endpoint: str, scale: float) -> None:
    assert validate_upsampler_options(scale, {"endpoint": endpoint})["endpoint"] == endpoint


@pytest.mark.parametrize(
    ("endpoint", "scale"),
    [
        ("smart", 4.01),
        ("dynamic", 5.0),
        ("dynamic", 0.99),
        ("precise", 16.5),
        ("precise", 0.0),
        ("precise", float("nan")),
        ("precise", float("inf")),
        ("precise", True),
    ],
)
def test_scale_out_of_range(endpoint: str, scale: float) -> None:
    with pytest.raises(RejectedInput, match="scale"):
        validate_upsampler_options(scale, {"endpoint": endpoint})


@pytest.mark.parametrize("endpoint", ["fast", "", None, 3, "Smart", "precise-upscale"])
def test_unknown_endpoint(endpoint: Any) -> None:
    with pytest.raises(RejectedInput, match=r"endpoint must be one of: smart, dynamic, precise"):
        validate_upsampler_options(2.0, {"endpoint": endpoint})


def test_all_dynamic_options_pass_through() -> None:
    options = {
        "endpoint": "dynamic",
        "inputImageType": "anime",
        "globalCreativity": 0,
        "detail": 10,
        "resemblance": 8.0,
        "description": "a red fox, sharp fur",
        "shouldEnhanceFaces": True,
        "shouldPreserveBlur": False,
        "shouldPreserveHands": True,
    }
    normalised = validate_upsampler_options(2.0, options)
    assert normalised == {**options, "resemblance": 8}
    assert type(normalised["resemblance"]) is int


@pytest.mark.parametrize(
    ("endpoint", "key", "value"),
    [
        ("smart", "globalCreativity", 5),
        ("smart", "detail", 5),
        ("smart", "description", "x" * 2000),
        ("smart", "inputImageType", "realism"),
        ("precise", "inputImageType", "universal"),
        ("precise", "shouldEnhanceFaces", True),
        ("precise", "shouldPreserveBlur", True),
        ("dynamic", "shouldPreserveHands", False),
    ],
)
def test_option_allowed(endpoint: str, key: str, value: Any) -> None:
    assert validate_upsampler_options(2.0, {"endpoint": endpoint, key: value})[key] == value


@pytest.mark.parametrize(
    ("endpoint", "key", "value"),
    [
        ("precise", "globalCreativity", 5),
        ("precise", "detail", 5),
        ("precise", "description", "x"),
        ("smart", "resemblance", 5),
        ("precise", "resemblance", 5),
        ("smart", "shouldPreserveHands", True),
        ("precise", "shouldPreserveHands", True),
    ],
)
def test_option_not_supported_by_endpoint(endpoint: str, key: str, value: Any) -> None:
    with pytest.raises(RejectedInput, match=rf"'{key}' is not supported by the {endpoint}"):
        validate_upsampler_options(2.0, {"endpoint": endpoint, key: value})


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("globalCreativity", 11, "integer from 0 to 10"),
        ("globalCreativity", -1, "integer from 0 to 10"),
        ("detail", 5.5, "integer from 0 to 10"),
        ("detail", "5", "integer from 0 to 10"),
        ("detail", True, "integer from 0 to 10"),
        ("detail", float("nan"), "integer from 0 to 10"),
        ("detail", None, "integer from 0 to 10"),
        ("resemblance", 10**30, "integer from 0 to 10"),
        ("description", "x" * 2001, "at most 2000"),
        ("description", 5, "must be a string"),
        ("shouldEnhanceFaces", 1, "true or false"),
        ("shouldPreserveBlur", "true", "true or false"),
        ("shouldPreserveHands", None, "true or false"),
        ("inputImageType", "watercolor", "realism, anime, universal"),
        ("inputImageType", "", "realism, anime, universal"),
        ("inputImageType", ["anime"], "realism, anime, universal"),
    ],
)
def test_option_bad_value(key: str, value: Any, match: str) -> None:
    with pytest.raises(RejectedInput, match=match) as info:
        validate_upsampler_options(2.0, {"endpoint": "dynamic", key: value})
    assert key in info.value.message


@pytest.mark.parametrize(
    "key", ["foo", "upscale_factor", "Detail", "imageUrl", "upscaleFactor", "webhook"]
)
def test_unknown_option_is_named(key: str) -> None:
    with pytest.raises(RejectedInput, match=rf"unknown option '{key}'"):
        validate_upsampler_options(2.0, {"endpoint": "dynamic", key: 1})


def test_options_must_be_an_object() -> None:
    with pytest.raises(RejectedInput):
        validate_upsampler_options(2.0, ["endpoint"])  # type: ignore[arg-type]


def test_validation_is_idempotent() -> None:
    once = validate_upsampler_options(3.0, {"endpoint": "smart", "detail": 7.0})
    assert validate_upsampler_options(3.0, once) == once


# --- submit body ---------------------------------------------------------------------


def test_submit_body_matches_the_documented_envelope() -> None:
    options = validate_upsampler_options(
        2.0, {"endpoint": "smart", "globalCreativity": 7, "detail": 8}
    )
    path, body = build_submit_body(make_request(), options)
    assert path == "/smart-upscale"
    assert body == {
        "webhook": "https://orchestrator.example/hooks/upsampler/job-42?t=secret",
        "input": {
            "imageUrl": "https://cdn.example/in.jpg",
            "upscaleFactor": 2,
            "globalCreativity": 7,
            "detail": 8,
        },
    }
    assert type(body["input"]["upscaleFactor"]) is int


def test_submit_body_without_callback_and_fractional_scale() -> None:
    path, body = build_submit_body(
        make_request(scale=2.5, callback_url=None), {"endpoint": "precise"}
    )
    assert path == "/precise-upscale"
    assert "webhook" not in body
    assert body["input"] == {"imageUrl": "https://cdn.example/in.jpg", "upscaleFactor": 2.5}


def test_submit_body_needs_an_image_url() -> None:
    with pytest.raises(ProviderRejected) as info:
        build_submit_body(make_request(image_url=None, image_bytes=b"png"), {"endpoint": "precise"})
    assert info.value.reason == "rejected_input"
