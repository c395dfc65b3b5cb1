"""Uploads over HTTP: streamed to disk, capped, counted, and nothing left behind on failure."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import TOKEN, Service
from tests.factories import make_png
from tests.security.standalone import raw_connection, read_until_closed, standalone_service

MAX_UPLOAD = 3 * 1024 * 1024


def big_image(size: int) -> bytes:
    head = make_png()
    return head + os.urandom(size - len(head))


def leftovers(data_dir: Path) -> list[Path]:
    """Part files of uploads (results being fetched are not ours to count)."""
    inputs = data_dir / "inputs"
    found = set(data_dir.rglob(".upload-*.part"))
    if inputs.exists():
        found |= set(inputs.rglob("*.part"))
    return sorted(found)


def stored_input(service: Service, job_id: str) -> bytes:
    (path,) = (service.data_dir / "inputs").glob(f"{job_id}.*")
    return path.read_bytes()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with standalone_service(
        tmp_path_factory.mktemp("uploads"),
        UPSCALE_MAX_UPLOAD_BYTES=str(MAX_UPLOAD),
        UPSCALE_MAX_CONCURRENT_UPLOADS="1",
        UPSCALE_BODY_TIMEOUT_S="20",
    ) as svc:
        yield svc


def test_a_multipart_upload_is_stored_byte_for_byte(service: Service) -> None:
    image = big_image(2 * 1024 * 1024)
    job = service.submit(image, provider="local")
    assert stored_input(service, job["id"]) == image
    assert leftovers(service.data_dir) == []


@pytest.mark.parametrize("as_data_uri", [False, True])
def test_a_base64_json_upload_is_stored_byte_for_byte(service: Service, as_data_uri: bool) -> None:
    image = big_image(2 * 1024 * 1024)
    text = base64.b64encode(image).decode()
    if as_data_uri:
        text = "data:image/png;base64," + text
    response = service.client.post(
        "/v1/jobs", json={"provider": "local", "image": text, "metadata": {"n": 1}}
    )
    assert response.status_code == 202, response.text
    assert response.json()["metadata"] == {"n": 1}
    assert stored_input(service, response.json()["id"]) == image
    assert leftovers(service.data_dir) == []


def test_the_same_upload_twice_under_one_idempotency_key_is_one_job(service: Service) -> None:
    image = big_image(300_000)
    headers = {"Idempotency-Key": "upload-twice"}
    first = service.client.post(
        "/v1/jobs",
        data={"provider": "local"},
        files={"image": ("a.png", image, "image/png")},
        headers=headers,
    )
    # The same image as base64 JSON is the same request.
    second = service.client.post(
        "/v1/jobs",
        json={"provider": "local", "scale": 2, "image": base64.b64encode(image).decode()},
        headers=headers,
    )
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["id"] == second.json()["id"]


@pytest.mark.parametrize("kind", ["multipart", "json"])
def test_an_image_over_the_cap_is_413_and_leaves_nothing(service: Service, kind: str) -> None:
    image = big_image(MAX_UPLOAD + 1)
    if kind == "multipart":
        response = service.client.post(
            "/v1/jobs", data={"provider": "local"}, files={"image": ("a.png", image, "image/png")}
        )
    else:
        response = service.client.post(
            "/v1/jobs", json={"provider": "local", "image": base64.b64encode(image).decode()}
        )
    assert response.status_code == 413, response.text
    assert leftovers(service.data_dir) == []


@pytest.mark.parametrize("kind", ["multipart", "json"])
def test_a_mask_over_the_cap_is_413_naming_the_mask_and_leaves_nothing(
    service: Service, kind: str
) -> None:
    image, mask = make_png(8, 8), big_image(MAX_UPLOAD + 1)
    fields = {"provider": "local", "operation": "replace", "prompt": "a cat"}
    if kind == "multipart":
        response = service.client.post(
            "/v1/jobs",
            data=fields,
            files={"image": ("a.png", image, "image/png"), "mask": ("m.png", mask, "image/png")},
        )
    else:
        encoded = {k: base64.b64encode(v).decode() for k, v in (("image", image), ("mask", mask))}
        response = service.client.post("/v1/jobs", json={**fields, **encoded})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["message"].startswith("mask is larger than")
    assert leftovers(service.data_dir) == []


def test_uploads_past_the_concurrent_cap_get_429_with_retry_after(service: Service) -> None:
    head = (
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n"
    )
    with raw_connection(service) as slow:
        slow.sendall(head.encode() + b'{"provider": "local", "image": "' + b"A" * 10_000)
        # A small body is not an upload and is not held back.
        assert service.client.post("/v1/jobs", json={"provider": "nope"}).status_code == 400
        response = service.client.post(
            "/v1/jobs",
            data={"provider": "local"},
            files={"image": ("a.png", big_image(100_000), "image/png")},
        )
        assert response.status_code == 429, response.text
        assert int(response.headers["retry-after"]) >= 1
    # The slot is given back when the slow client goes away.
    for _ in range(50):
        response = service.client.post(
            "/v1/jobs",
            data={"provider": "local"},
            files={"image": ("a.png", big_image(100_000), "image/png")},
        )
        if response.status_code != 429:
            break
    assert response.status_code == 202, response.text
    assert leftovers(service.data_dir) == []


def test_a_slow_upload_is_cut_off_and_leaves_nothing(tmp_path: Path) -> None:
    head = (
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 2000000\r\n\r\n"
        '--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
    )
    with standalone_service(tmp_path, UPSCALE_BODY_TIMEOUT_S="1") as svc:
        with raw_connection(svc) as sock:
            sock.sendall(head.encode() + big_image(1_200_000))
            answer, _ = read_until_closed(sock, 8.0)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert leftovers(svc.data_dir) == []


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[None]:
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.parametrize("kind", ["multipart", "json"])
def test_an_upload_onto_a_full_disk_is_503_and_leaves_nothing(tmp_path: Path, kind: str) -> None:
    data_dir = tmp_path / "small"
    with (
        small_disk(data_dir, "2m"),
        standalone_service(
            tmp_path,
            UPSCALE_DATA_DIR=str(data_dir),
            UPSCALE_DATABASE_URL=f"sqlite:///{tmp_path / 'upscale.db'}",
        ) as svc,
    ):
        image = big_image(3 * 1024 * 1024)
        if kind == "multipart":
            response = svc.client.post(
                "/v1/jobs",
                data={"provider": "local"},
                files={"image": ("a.png", image, "image/png")},
            )
        else:
            response = svc.client.post(
                "/v1/jobs", json={"provider": "local", "image": base64.b64encode(image).decode()}
            )
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"]
        assert response.json()["error"]["code"] == "insufficient_storage"
        assert leftovers(data_dir) == []
        # With room again, uploads work.
        small = big_image(100_000)
        job = svc.submit(small, provider="local")
        assert stored_input(svc, job["id"]) == small
        assert "Traceback" not in svc.proc.log()


def test_fields_are_read_from_the_form(service: Service) -> None:
    response = service.client.post(
        "/v1/jobs",
        data={"provider": "local", "scale": "3", "metadata": json.dumps({"order": 7})},
        files={"image": ("a.png", make_png(), "image/png")},
    )
    assert response.status_code == 202, response.text
    assert response.json()["metadata"] == {"order": 7}
