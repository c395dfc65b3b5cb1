"""``upscale submit`` for a replace: the multipart it sends, and the flags it refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.cli.main import build_parser
from orchestrator.cli.submit import _check_operation, _submit_one


def _args(*argv: str) -> Any:
    return build_parser().parse_args(["submit", *argv])


def _client(seen: list[httpx.Request]) -> httpx.Client:
    def answer(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(202, json={"id": "job_1", "state": "queued"})

    return httpx.Client(base_url="http://svc.test", transport=httpx.MockTransport(answer))


def _parts(request: httpx.Request) -> dict[str, bytes]:
    """The multipart body's parts by name (enough for these small bodies)."""
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    parts: dict[str, bytes] = {}
    for chunk in request.content.split(b"--" + boundary)[1:-1]:
        head, _, body = chunk.partition(b"\r\n\r\n")
        name = head.split(b'name="')[1].split(b'"')[0].decode()
        parts[name] = body.removesuffix(b"\r\n")
    return parts


def test_a_replace_sends_image_and_mask_parts_and_the_prompt(tmp_path: Path) -> None:
    image, mask = tmp_path / "photo.png", tmp_path / "mask.png"
    image.write_bytes(b"IMAGE")
    mask.write_bytes(b"MASK")
    args = _args(
        str(image), "--operation", "replace", "--mask", str(mask), "--prompt", "Butterfly",
        "--provider", "fotor",
    )  # fmt: skip
    _check_operation(args)
    seen: list[httpx.Request] = []
    with _client(seen) as client:
        _submit_one(client, args, str(image), {})
    parts = _parts(seen[0])
    assert parts["image"] == b"IMAGE" and parts["mask"] == b"MASK"
    assert parts["prompt"] == b"Butterfly" and parts["operation"] == b"replace"
    assert parts["provider"] == b"fotor" and "scale" not in parts


def test_an_upscale_is_sent_as_before(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    with _client(seen) as client:
        _submit_one(
            client,
            _args("https://in.test/a.png", "--provider", "local"),
            "https://in.test/a.png",
            {},
        )
    body = json.loads(seen[0].content)
    assert body == {
        "provider": "local",
        "scale": 2.0,
        "image": "https://in.test/a.png",
        "options": {},
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--operation", "replace", "--prompt", "x"], "needs --mask FILE and --prompt TEXT"),
        (["--operation", "replace", "--mask", "MASK"], "needs --mask FILE and --prompt TEXT"),
        (["--operation", "replace", "--mask", "MASK", "--prompt", "x", "--scale", "2"], "--scale"),
        (["--mask", "MASK"], "go with --operation replace"),
        (["--prompt", "x"], "go with --operation replace"),
    ],
)
def test_flags_that_do_not_go_with_the_operation_are_refused(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    mask = tmp_path / "mask.png"
    mask.write_bytes(b"MASK")
    argv = [str(mask) if a == "MASK" else a for a in argv]
    with pytest.raises(SystemExit, match=message):
        _check_operation(_args("a.png", "--provider", "fotor", *argv))


def test_a_replace_refuses_an_image_url(tmp_path: Path) -> None:
    mask = tmp_path / "mask.png"
    mask.write_bytes(b"MASK")
    args = _args(
        "https://in.test/a.png", "--operation", "replace", "--mask", str(mask), "--prompt", "x",
        "--provider", "fotor",
    )  # fmt: skip
    with pytest.raises(SystemExit, match="files, not URLs"):
        _check_operation(args)


def test_jobs_list_and_providers_take_the_new_flags() -> None:
    args = build_parser().parse_args(["jobs", "list", "--operation", "replace"])
    assert args.operation == "replace"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["jobs", "list", "--operation", "inpaint"])
