"""Shared fixtures: an app wired to a real SQLite store in a temporary directory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from orchestrator.runtime import Runtime, build_runtime
from orchestrator.settings import load_settings
from receiver.app import create_app

API_TOKEN = "test-token"
BASE = "http://testserver"


@asynccontextmanager
async def running_app(
    tmp_path: Path, *, run_loops: bool = False, with_sandbox: bool = False, **env: str
) -> AsyncIterator[tuple[Starlette, Runtime, httpx.AsyncClient]]:
    """The real app (no network listener) with its lifespan running, and a client for it."""
    settings = load_settings(
        {
            "UPSCALE_DATA_DIR": str(tmp_path / "data"),
            "UPSCALE_API_TOKENS": API_TOKEN,
            "UPSCALE_SECRET_KEYS": "test-secret-key",
            **env,
        }
    )
    runtime = build_runtime(settings, listen_url=BASE, run_loops=run_loops)
    app = create_app(runtime, with_sandbox=with_sandbox)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url=BASE,
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        ) as client:
            yield app, runtime, client


AppFactory = Callable[
    ..., AbstractAsyncContextManager[tuple[Starlette, Runtime, httpx.AsyncClient]]
]


@pytest.fixture
def app_factory(tmp_path: Path) -> AppFactory:
    def factory(
        **kwargs: object,
    ) -> AbstractAsyncContextManager[tuple[Starlette, Runtime, httpx.AsyncClient]]:
        return running_app(tmp_path, **kwargs)  # type: ignore[arg-type]

    return factory
