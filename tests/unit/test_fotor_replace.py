"""Fotor's AI Replace in the adapter: its options and its submit body."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from orchestrator.providers.base import SubmitRequest
from orchestrator.providers.fotor import build_replace_body
from orchestrator.providers.fotor_options import validate_replace_options
from schemas.errors import ProviderRejected, RejectedInput
from schemas.jobs import Operation

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
IMAGE_URL = "https://orchestrator.example/inputs/job-1?sig=abc"
MASK_URL = "https://orchestrator.example/inputs/job-1/mask?sig=def"


def replace_request(**overrides: Any) -> SubmitRequest:
    fields: dict[str, Any] = {
        "job_id": "job-1",
        "scale": 1.0,
        "options": {},
        "image_url": IMAGE_URL,
        "operation": Operation.REPLACE,
        "prompt": "Butterfly",
        "mask_url": MASK_URL,
    }
    fields.update(overrides)
    return SubmitRequest(**fields)


def data_uri(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


# --- options -------------------------------------------------------------------------


def test_replace_takes_no_options() -> None:
    assert validate_replace_options({}) == {}


@pytest.mark.parametrize(
    ("key", "needle"),
    [
        ("imageUrl", "the job's image"),
        ("content", "the job's prompt"),
        ("maskImageUrl", "the job's mask"),
        ("max_image_width", "takes no options"),
        ("strength", "takes no options"),
    ],
)
def test_replace_refuses_every_option(key: str, needle: str) -> None:
    with pytest.raises(RejectedInput, match=needle) as info:
        validate_replace_options({key: 1})
    assert f"'{key}'" in info.value.message


def test_replace_options_must_be_a_mapping() -> None:
    with pytest.raises(RejectedInput):
        validate_replace_options(["content"])  # type: ignore[arg-type]


# --- submit body ---------------------------------------------------------------------


def test_replace_body_is_the_documented_one() -> None:
    assert build_replace_body(replace_request()) == {
        "imageUrl": IMAGE_URL,
        "content": "Butterfly",
        "maskImageUrl": MASK_URL,
    }


def test_replace_body_prefers_urls_over_bytes() -> None:
    body = build_replace_body(replace_request(image_bytes=PNG, mask_bytes=PNG))
    assert (body["imageUrl"], body["maskImageUrl"]) == (IMAGE_URL, MASK_URL)


def test_replace_body_falls_back_to_data_uris() -> None:
    body = build_replace_body(
        replace_request(image_url=None, image_bytes=JPEG, mask_url=None, mask_bytes=PNG)
    )
    assert body == {
        "imageUrl": data_uri("image/jpeg", JPEG),
        "content": "Butterfly",
        "maskImageUrl": data_uri("image/png", PNG),
    }


def test_replace_body_mixes_a_url_and_bytes() -> None:
    body = build_replace_body(replace_request(mask_url=None, mask_bytes=PNG))
    assert body["imageUrl"] == IMAGE_URL
    assert body["maskImageUrl"] == data_uri("image/png", PNG)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"image_url": None}, "image"),
        ({"image_url": "", "image_bytes": b""}, "image"),
        ({"prompt": None}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"mask_url": None}, "mask"),
        ({"mask_url": "", "mask_bytes": b""}, "mask"),
    ],
)
def test_replace_body_without_an_input_is_rejected_input(
    overrides: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ProviderRejected, match=needle) as info:
        build_replace_body(replace_request(**overrides))
    assert info.value.reason == "rejected_input"
    assert not info.value.retryable
