"""LocalResultStorage.read_stream and ResultStream."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from orchestrator.results.storage import LocalResultStorage, ResultStorage, ResultStream


@pytest.fixture
def storage(tmp_path: Path) -> LocalResultStorage:
    return LocalResultStorage(tmp_path / "results")


async def put(storage: LocalResultStorage, key: str, data: bytes) -> None:
    tmp = storage.tmp_dir / f"{key}.part"
    tmp.write_bytes(data)
    await storage.put_file(tmp, key)


async def test_local_read_stream_chunks(storage: LocalResultStorage) -> None:
    data = os.urandom(1_000_000)
    await put(storage, "job_1.png", data)

    stream = await storage.read_stream("job_1.png", chunk_size=300_000)
    assert stream.size == len(data)
    chunks = [chunk async for chunk in stream]

    assert [len(c) for c in chunks] == [300_000, 300_000, 300_000, 100_000]
    assert hashlib.sha256(b"".join(chunks)).digest() == hashlib.sha256(data).digest()
    assert stream.closed


async def test_local_read_stream_default_chunk(storage: LocalResultStorage) -> None:
    await put(storage, "small.webp", b"tiny")
    async with await storage.read_stream("small.webp") as stream:
        assert [chunk async for chunk in stream] == [b"tiny"]


async def test_local_read_stream_missing(storage: LocalResultStorage) -> None:
    with pytest.raises(FileNotFoundError):
        await storage.read_stream("nothing.png")


@pytest.mark.parametrize("key", ["../x.png", "a/b.png", "", ".hidden"])
async def test_local_read_stream_bad_key(storage: LocalResultStorage, key: str) -> None:
    with pytest.raises(ValueError, match="invalid result key"):
        await storage.read_stream(key)


async def test_local_read_stream_bad_chunk_size(storage: LocalResultStorage) -> None:
    await put(storage, "a.png", b"x")
    with pytest.raises(ValueError, match="chunk_size"):
        await storage.read_stream("a.png", chunk_size=0)


async def test_closing_early_releases_the_file(storage: LocalResultStorage) -> None:
    await put(storage, "a.png", b"x" * 10_000)
    stream = await storage.read_stream("a.png", chunk_size=1000)
    assert await anext(stream) == b"x" * 1000
    await stream.aclose()
    await stream.aclose()  # idempotent
    assert [chunk async for chunk in stream] == []
    # The file can go away while nobody holds it (and no ResourceWarning follows).
    await storage.delete("a.png")
    assert not await storage.exists("a.png")


async def test_local_storage_satisfies_the_protocol(storage: LocalResultStorage) -> None:
    store: ResultStorage = storage
    await put(storage, "p.png", b"abc")
    async with await store.read_stream("p.png") as stream:
        assert b"".join([c async for c in stream]) == b"abc"
    await store.aclose()


async def test_result_stream_closes_when_reading_fails() -> None:
    closed: list[bool] = []

    async def read() -> bytes:
        raise OSError(5, "boom")

    async def close() -> None:
        closed.append(True)

    stream = ResultStream(read, close)
    with pytest.raises(OSError, match="boom"):
        await anext(stream)
    assert closed == [True]
    assert stream.closed
    assert stream.size is None
