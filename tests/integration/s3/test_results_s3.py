"""S3ResultStorage against a real S3-compatible server (SeaweedFS on 127.0.0.1).

The server is the session fixture in this directory's conftest; every test
works under a prefix of its own in one bucket. No traffic leaves 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tracemalloc
from pathlib import Path

import httpx
import pytest

from orchestrator.fetch.fetcher import ResultFetcher
from orchestrator.results.backends import open_result_storage
from orchestrator.results.file_slice import FileSlice
from orchestrator.results.storage import ResultStorage, ResultStream
from tests.factories import make_png
from tests.integration.s3.conftest import SeaweedS3

results_s3 = pytest.importorskip("orchestrator.results.s3", reason="the 's3' extra")
S3ResultStorage = results_s3.S3ResultStorage
StorageUnavailable = results_s3.StorageUnavailable

MiB = 1024 * 1024


def write_random(path: Path, size: int, block: int = MiB) -> str:
    """Fill ``path`` with ``size`` random bytes in blocks; their sha256."""
    sha = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            data = os.urandom(min(block, left))
            sha.update(data)
            out.write(data)
            left -= len(data)
    return sha.hexdigest()


async def sha256_of(stream: ResultStream) -> tuple[str, int, int]:
    """(sha256, bytes, largest chunk) of everything ``stream`` yields."""
    sha = hashlib.sha256()
    total = largest = 0
    async with stream:
        async for chunk in stream:
            sha.update(chunk)
            total += len(chunk)
            largest = max(largest, len(chunk))
    return sha.hexdigest(), total, largest


def storage_for(server: SeaweedS3, prefix: str, **kwargs: object) -> S3ResultStorage:
    return S3ResultStorage(
        server.bucket,
        prefix,
        endpoint_url=server.endpoint_url,
        region=server.region,
        access_key_id=server.access_key_id,
        secret_access_key=server.secret_access_key,
        **kwargs,
    )


async def test_round_trip(s3_storage: S3ResultStorage, tmp_path: Path) -> None:
    tmp = tmp_path / "job_1.png.part"
    digest = write_random(tmp, 300_000)

    await s3_storage.put_file(tmp, "job_1.png")

    assert not tmp.exists(), "put_file deletes the temporary file after the upload"
    assert await s3_storage.exists("job_1.png")
    stream = await s3_storage.read_stream("job_1.png", chunk_size=64 * 1024)
    assert stream.size == 300_000
    assert await sha256_of(stream) == (digest, 300_000, 64 * 1024)
    assert stream.closed
    with await s3_storage.open("job_1.png") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == digest

    await s3_storage.delete("job_1.png")

    assert not await s3_storage.exists("job_1.png")
    with pytest.raises(FileNotFoundError):
        await s3_storage.read_stream("job_1.png")
    with pytest.raises(FileNotFoundError):
        await s3_storage.open("job_1.png")
    await s3_storage.delete("job_1.png")  # already gone: no error


async def test_put_replaces_and_sets_content_type(
    s3_storage: S3ResultStorage, seaweed_s3: SeaweedS3, tmp_path: Path
) -> None:
    first, second = tmp_path / "a.part", tmp_path / "b.part"
    first.write_bytes(b"first")
    second.write_bytes(b"second version")
    await s3_storage.put_file(first, "job_2.webp")
    await s3_storage.put_file(second, "job_2.webp")

    url = await s3_storage.presigned_url("job_2.webp", 60)
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.content == b"second version"
    assert response.headers["content-type"] == "image/webp"


async def test_empty_file(s3_storage: S3ResultStorage, tmp_path: Path) -> None:
    tmp = tmp_path / "empty.part"
    tmp.write_bytes(b"")
    await s3_storage.put_file(tmp, "empty.png")
    stream = await s3_storage.read_stream("empty.png")
    assert [chunk async for chunk in stream] == []
    assert stream.closed


async def test_large_file_multipart_with_bounded_memory(
    s3_storage: S3ResultStorage, tmp_path: Path
) -> None:
    size = 30 * MiB
    tmp = tmp_path / "big.part"
    digest = write_random(tmp, size)
    # Create the client first: loading botocore's S3 model costs ~10 MiB, once.
    assert not await s3_storage.exists("big.png")

    tracemalloc.start()
    try:
        await s3_storage.put_file(tmp, "big.png")
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        streamed = await sha256_of(await s3_storage.read_stream("big.png"))
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert streamed[:2] == (digest, size)
    assert not tmp.exists()
    # Request bodies are streamed from the file: not even one 8 MiB part in memory.
    assert upload_peak < 4 * MiB, f"upload peak {upload_peak / MiB:.1f} MiB"
    assert download_peak < 4 * MiB, f"download peak {download_peak / MiB:.1f} MiB"
    # A multipart object's ETag is "<md5 of the part md5s>-<part count>".
    s3 = await s3_storage._client()
    head = await s3.head_object(Bucket=s3_storage.bucket, Key=s3_storage.object_key("big.png"))
    assert head["ContentLength"] == size
    assert head["ETag"].strip('"').endswith("-4"), head["ETag"]


async def test_failed_multipart_upload_is_aborted(
    s3_storage: S3ResultStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = tmp_path / "big.part"
    write_random(tmp, 12 * MiB)
    real_read = FileSlice.read

    def failing_read(self: object, size: int | None = -1) -> bytes:
        if self._start > 0:  # type: ignore[attr-defined]
            raise OSError(5, "disk went away")
        return real_read(self, size)

    monkeypatch.setattr(FileSlice, "read", failing_read)
    with pytest.raises(OSError, match="disk went away"):
        await s3_storage.put_file(tmp, "broken.png")

    assert tmp.exists(), "a failed upload leaves the temporary file to the caller"
    assert not await s3_storage.exists("broken.png")
    s3 = await s3_storage._client()
    uploads = await s3.list_multipart_uploads(Bucket=s3_storage.bucket, Prefix=s3_storage.prefix)
    assert uploads.get("Uploads", []) == []


async def test_presigned_url(s3_storage: S3ResultStorage, tmp_path: Path) -> None:
    tmp = tmp_path / "p.part"
    digest = write_random(tmp, 100_000)
    await s3_storage.put_file(tmp, "job_3.png")

    url = await s3_storage.presigned_url("job_3.png", expires_s=120)
    assert url.startswith(s3_storage.endpoint_url or "")
    assert "X-Amz-Signature=" in url

    async with httpx.AsyncClient(trust_env=False) as client:
        good = await client.get(url)
        tampered = await client.get(url.replace("job_3.png", "job_4.png"))
        unsigned = await client.get(url.split("?")[0])
    assert good.status_code == 200
    assert hashlib.sha256(good.content).hexdigest() == digest
    assert good.headers["content-type"] == "image/png"
    assert tampered.status_code == 403
    assert unsigned.status_code == 403

    with pytest.raises(ValueError, match="expires_s"):
        await s3_storage.presigned_url("job_3.png", expires_s=0)


BAD_KEYS = ["../x.png", "a/b.png", "", ".hidden", "x" * 201, "a..b.png", "sp ace.png"]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_bad_keys_rejected(s3_storage: S3ResultStorage, tmp_path: Path, key: str) -> None:
    tmp = tmp_path / "x.part"
    tmp.write_bytes(b"data")
    with pytest.raises(ValueError, match="invalid result key"):
        await s3_storage.put_file(tmp, key)
    assert tmp.exists()
    for call in (
        s3_storage.exists,
        s3_storage.read_stream,
        s3_storage.open,
        s3_storage.delete,
        s3_storage.presigned_url,
    ):
        with pytest.raises(ValueError, match="invalid result key"):
            await call(key)


async def test_wrong_credentials_are_storage_errors(seaweed_s3: SeaweedS3, tmp_path: Path) -> None:
    tmp = tmp_path / "x.part"
    tmp.write_bytes(b"data")
    async with S3ResultStorage(
        seaweed_s3.bucket,
        "t/creds",
        endpoint_url=seaweed_s3.endpoint_url,
        access_key_id=seaweed_s3.access_key_id,
        secret_access_key="not-the-secret",
        max_attempts=1,
    ) as storage:
        with pytest.raises(StorageUnavailable) as caught:
            await storage.put_file(tmp, "x.png")
        assert isinstance(caught.value, OSError)
        assert caught.value.strerror and "upload of x.png failed" in caught.value.strerror
        with pytest.raises(StorageUnavailable):
            await storage.exists("x.png")
    assert tmp.exists()


async def test_missing_bucket_is_a_storage_error(seaweed_s3: SeaweedS3, tmp_path: Path) -> None:
    tmp = tmp_path / "x.part"
    tmp.write_bytes(b"data")
    async with storage_for(seaweed_s3, "", max_attempts=1) as storage:
        storage.bucket = "no-such-bucket-here"
        with pytest.raises(StorageUnavailable, match="NoSuchBucket"):
            await storage.read_stream("x.png")


async def test_unreachable_endpoint_is_a_storage_error(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with S3ResultStorage(
        "bucket",
        endpoint_url=f"http://127.0.0.1:{port}",
        access_key_id="k",
        secret_access_key="s",
        max_attempts=1,
        connect_timeout_s=1.0,
    ) as storage:
        with pytest.raises(StorageUnavailable, match=r"lookup of x\.png failed"):
            await storage.exists("x.png")


async def test_stream_closed_early_releases_connection(
    s3_storage: S3ResultStorage, tmp_path: Path
) -> None:
    tmp = tmp_path / "x.part"
    write_random(tmp, 2 * MiB)
    await s3_storage.put_file(tmp, "early.png")
    for _ in range(3):
        stream = await s3_storage.read_stream("early.png", chunk_size=1024)
        assert len(await anext(stream)) <= 1024
        await stream.aclose()
        assert stream.closed
        assert [chunk async for chunk in stream] == []


async def test_fetcher_stores_into_s3(s3_storage: S3ResultStorage, tmp_path: Path) -> None:
    png = make_png(20, 10)
    async with httpx.AsyncClient(trust_env=False) as client:
        fetcher = ResultFetcher(
            client, s3_storage, tmp_path / "spool", max_bytes=MiB, max_pixels=10_000
        )
        info = await fetcher.store_bytes(png, "job_9")

    assert info.key == "job_9.png"
    assert info.sha256 == hashlib.sha256(png).hexdigest()
    assert list((tmp_path / "spool").iterdir()) == []
    streamed = await sha256_of(await s3_storage.read_stream(info.key))
    assert streamed[:2] == (info.sha256, len(png))


async def test_open_result_storage_s3_url(seaweed_s3: SeaweedS3, tmp_path: Path) -> None:
    storage: ResultStorage = open_result_storage(
        f"s3://{seaweed_s3.bucket}/t/from-url/", data_dir=tmp_path, env=seaweed_s3.env()
    )
    assert isinstance(storage, S3ResultStorage)
    assert storage.prefix == "t/from-url"
    tmp = tmp_path / "u.part"
    tmp.write_bytes(b"via url")
    try:
        await storage.put_file(tmp, "u.png")
        stream = await storage.read_stream("u.png")
        assert b"".join([c async for c in stream]) == b"via url"
        await storage.delete("u.png")
    finally:
        await storage.aclose()
