"""The JSON body splitter: a base64 image streams out decoded, the rest stays a document."""

from __future__ import annotations

import base64
import json
import os

import pytest

from receiver.json_upload import Base64Stream, JsonImageSplitter
from schemas.errors import PayloadTooLarge, RejectedInput

IMAGE = b"\x89PNG\r\n\x1a\n" + os.urandom(50_000)
B64 = base64.b64encode(IMAGE).decode()


def split(body: bytes, chunk: int, rest_limit: int = 64 * 1024) -> tuple[bytes, object, bool]:
    splitter = JsonImageSplitter(rest_limit)
    out = b"".join(splitter.feed(body[i : i + chunk]) for i in range(0, len(body), chunk))
    out += splitter.close()
    return out, json.loads(splitter.rest), splitter.streamed


@pytest.mark.parametrize("chunk", [1, 3, 7, 4096, 65536, 10**7])
def test_a_base64_image_comes_out_decoded_and_the_rest_parses(chunk: int) -> None:
    body = json.dumps(
        {"provider": "local", "image": B64, "scale": 2, "metadata": {"image": "x", "n": [1, "]"]}}
    ).encode()
    image, rest, streamed = split(body, chunk)
    assert streamed
    assert image == IMAGE
    assert rest == {
        "provider": "local",
        "image": None,
        "scale": 2,
        "metadata": {"image": "x", "n": [1, "]"]},
    }


@pytest.mark.parametrize("chunk", [1, 5, 1000, 10**7])
def test_data_uris_escaped_slashes_and_line_breaks_are_understood(chunk: int) -> None:
    wrapped = "\n".join(B64[i : i + 76] for i in range(0, len(B64), 76))
    text = "data:image/png;base64," + wrapped
    raw = json.dumps(text).replace("/", "\\/")  # as PHP's json_encode writes it
    body = b'{"image": ' + raw.encode() + b', "provider": "local"}'
    image, rest, _ = split(body, chunk)
    assert image == IMAGE
    assert rest == {"image": None, "provider": "local"}


def test_unicode_escapes_inside_the_image_are_decoded() -> None:
    raw = B64[:300].replace("A", "\\u0041")
    body = b'{"image": "' + raw.encode() + b'"}'
    image, _, _ = split(body, 2)
    assert image == base64.b64decode(B64[:300])


@pytest.mark.parametrize(
    "value", ["https://example.com/in.png", "https://example.com/" + "a" * 400, B64[:100]]
)
def test_urls_and_short_values_stay_in_the_document(value: str) -> None:
    body = json.dumps({"provider": "local", "image": value}).encode()
    image, rest, streamed = split(body, 3)
    assert (image, streamed) == (b"", False)
    assert rest == {"provider": "local", "image": value}


@pytest.mark.parametrize(
    "image", [B64[:1000] + "!" + B64[1000:2000], B64[:2000] + "==" + B64[:400], "data:x" * 100]
)
def test_invalid_base64_is_rejected(image: str) -> None:
    with pytest.raises(RejectedInput, match="base64"):
        split(json.dumps({"image": image}).encode(), 100)


def test_an_image_given_twice_is_rejected() -> None:
    body = b'{"image": "' + B64.encode() + b'", "image": "' + B64.encode() + b'"}'
    with pytest.raises(RejectedInput, match="twice"):
        split(body, 4096)


def test_fields_around_the_image_are_capped() -> None:
    body = json.dumps({"image": B64, "metadata": "m" * 5000}).encode()
    with pytest.raises(PayloadTooLarge):
        split(body, 4096, rest_limit=1000)


def test_a_body_that_ends_inside_the_image_is_rejected() -> None:
    with pytest.raises(RejectedInput):
        split(json.dumps({"image": B64}).encode()[:-5], 4096)


def test_base64_stream_matches_the_whole_decode_for_every_split() -> None:
    text = base64.b64encode(os.urandom(1000)).rstrip(b"=")  # missing padding is accepted
    for cut in range(0, len(text), 37):
        stream = Base64Stream()
        decoded = stream.feed(text[:cut]) + stream.feed(text[cut:]) + stream.close()
        assert decoded == base64.b64decode(text + b"=" * (-len(text) % 4))


MASK = b"\x89PNG\r\n\x1a\n" + os.urandom(20_000)


@pytest.mark.parametrize("chunk", [1, 5, 4096, 10**7])
def test_a_replace_jobs_mask_streams_out_apart_from_the_image(chunk: int) -> None:
    body = json.dumps(
        {
            "provider": "fotor",
            "mask": "data:image/png;base64," + base64.b64encode(MASK).decode(),
            "prompt": "Butterfly",
            "image": B64,
        }
    ).encode()
    splitter = JsonImageSplitter(64 * 1024, keys=("image", "mask"))
    outs: dict[str, list[bytes]] = {"image": [], "mask": []}
    for i in range(0, len(body), chunk):
        for key, data in splitter.feed_parts(body[i : i + chunk]).items():
            outs[key].append(data)
    splitter.close()
    assert b"".join(outs["image"]) == IMAGE
    assert b"".join(outs["mask"]) == MASK
    assert splitter.streamed_keys == {"image", "mask"}
    assert json.loads(splitter.rest) == {
        "provider": "fotor",
        "mask": None,
        "prompt": "Butterfly",
        "image": None,
    }


def test_a_mask_given_twice_or_not_base64_is_refused_by_name() -> None:
    twice = JsonImageSplitter(64 * 1024, keys=("image", "mask"))
    long = base64.b64encode(MASK).decode()
    with pytest.raises(RejectedInput, match="mask is given twice"):
        twice.feed_parts(json.dumps({"mask": long, "x": 1}).encode()[:-1] + b', "mask": "')
        twice.feed_parts(long.encode() + b'"}')
    junk = JsonImageSplitter(64 * 1024, keys=("image", "mask"))
    with pytest.raises(RejectedInput, match="mask is neither"):
        junk.feed_parts(json.dumps({"mask": "!" * 400}).encode())
    # An image-only splitter leaves a mask in the document.
    plain = JsonImageSplitter(64 * 1024)
    plain.feed(json.dumps({"mask": long}).encode())
    assert json.loads(plain.rest) == {"mask": long}
