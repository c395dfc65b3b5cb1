"""Factory helpers shared by the tests."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from PIL import Image

from orchestrator.common.ids import new_id
from orchestrator.store.protocol import NewJob
from orchestrator.store.sqlite import SQLiteStore


def make_png(
    width: int = 16, height: int = 12, color: tuple[int, int, int] = (200, 40, 90)
) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def make_new_job(now: datetime, **overrides: Any) -> NewJob:
    fields: dict[str, Any] = {
        "id": new_id("job", now),
        "provider": "upsampler",
        "scale": 2.0,
        "options": {"endpoint": "precise"},
        "metadata": {"sku": "A-1"},
        "input_url": "https://example.test/in.png",
        "input_key": None,
        "created_at": now,
        "deadline_at": now + timedelta(hours=1),
    }
    fields.update(overrides)
    return NewJob(**fields)


@asynccontextmanager
async def open_sqlite(path: Path, **options: Any) -> AsyncIterator[SQLiteStore]:
    """A SQLite store at ``path``, open for the block."""
    store = SQLiteStore(path, **options)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
