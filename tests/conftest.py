"""Shared fixtures: an app wired to a real SQLite store in a temporary directory."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
from starlette.applications import Starlette

from orchestrator.common.settings import load_settings
from orchestrator.service.runtime import Runtime, build_runtime
from receiver.app import create_app
from tests.processes import command, marked, parent, wait_gone

API_TOKEN = "test-token"
BASE = "http://testserver"

# Every process this test run starts inherits this mark (the e2e harness keeps
# variables other than UPSCALE_*), so one left running is found at the end even
# after it was handed to another parent.
RUN_MARK = "ORCHESTRATOR_TEST_RUN"
os.environ[RUN_MARK] = uuid.uuid4().hex


def _left_behind() -> set[int]:
    """Processes of this run still running, other than this one and its own
    multiprocessing resource tracker (which ends with this process)."""
    me = os.getpid()
    return {
        pid
        for pid in marked(RUN_MARK, os.environ[RUN_MARK]) - {me}
        if not (parent(pid) == me and "multiprocessing.resource_tracker" in command(pid))
    }


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a test left a process it started running."""
    if not Path("/proc/self/environ").exists():
        return
    left = wait_gone(_left_behind(), timeout_s=5.0)
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"  {pid}: {command(pid)[:200]}" for pid in sorted(left)]
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_line("processes started by this test run were left running:", red=True)
        for line in lines:
            reporter.write_line(line)
    for pid in left:  # ours: end them, so the next run starts clean
        with suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
    # As `upscale serve` on its defaults: bound to loopback, so sandboxed providers are offered.
    runtime = build_runtime(settings, listen_url=BASE, bind_host="127.0.0.1", run_loops=run_loops)
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


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped at its end), unmigrated."""
    from tests.postgres_db import create_database, drop_database, run_sync, unreachable

    try:
        dsn = run_sync(create_database)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        unreachable(exc)
        raise
    try:
        yield dsn
    finally:
        run_sync(lambda: drop_database(dsn))


@pytest.fixture
async def postgres_dsn(postgres_database: str) -> str:
    """The session's database, migrated, with every table emptied for this test."""
    from tests.postgres_db import migrated_and_empty

    return await migrated_and_empty(postgres_database)
