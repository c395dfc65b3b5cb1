"""`upscale serve` builds its app and its server from one Settings, not the environment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from orchestrator.cli.serve import build_app, build_server, listen_url, run_server
from orchestrator.common.settings import Settings, load_settings
from orchestrator.service.listener import server_options
from orchestrator.service.runtime import Runtime
from orchestrator.store.sqlite_file import DatabaseMarker
from receiver.app import create_app

TOKEN = "serve-test-token"


def _settings(tmp_path: Path, **env: str) -> Settings:
    return load_settings(
        {
            "UPSCALE_DATA_DIR": str(tmp_path / "data"),
            "UPSCALE_API_TOKENS": TOKEN,
            "UPSCALE_SECRET_KEYS": "serve-test-key",
            **env,
        }
    )


class Factory:
    """receiver.app.create_app, remembering what serve asked of it. The gc is not
    tuned here: that would freeze the collector of the test process."""

    def __init__(self) -> None:
        self.runtime: Runtime | None = None
        self.tune_gc: bool | None = None

    def __call__(self, runtime: Runtime, *, tune_gc: bool = False) -> Starlette:
        self.runtime, self.tune_gc = runtime, tune_gc
        return create_app(runtime)


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000"),
        ("0.0.0.0", "http://127.0.0.1:8000"),
        ("::", "http://127.0.0.1:8000"),
        ("localhost", "http://localhost:8000"),
    ],
)
def test_listen_url_reaches_a_wildcard_listener_through_loopback(host: str, url: str) -> None:
    assert listen_url(host, 8000) == url


def test_app_is_built_from_settings_and_flags_without_touching_the_environment(
    tmp_path: Path,
) -> None:
    before = dict(os.environ)
    factory = Factory()
    settings = _settings(tmp_path)

    app = build_app(
        settings,
        host="0.0.0.0",
        port=8123,
        web_only=True,
        factory=factory,
    )

    assert dict(os.environ) == before
    runtime = factory.runtime
    assert runtime is not None and app.state.runtime is runtime
    assert factory.tune_gc is True
    assert runtime.settings is settings
    assert runtime.listen_url == "http://127.0.0.1:8123"
    assert runtime.run_loops is False
    # Bound to every address: the sandbox is not mounted (orchestrator/sandbox/exposure.py).
    assert runtime.sandbox_mount.mounted is False


def test_defaults_run_the_loops_and_mount_the_sandbox_on_loopback(tmp_path: Path) -> None:
    factory = Factory()
    build_app(_settings(tmp_path), host="127.0.0.1", port=8124, factory=factory)
    assert factory.runtime is not None
    assert factory.runtime.run_loops is True
    assert factory.runtime.sandbox_mount.mounted is True


def test_the_default_factory_is_the_receivers_app(tmp_path: Path) -> None:
    app = build_app(_settings(tmp_path, UPSCALE_SANDBOX="off"), host="127.0.0.1", port=8125)
    assert isinstance(app, Starlette)
    assert isinstance(app.state.runtime, Runtime)


async def _ready(app: Any) -> int:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return (await client.get("/readyz")).status_code


async def test_allow_new_database_is_passed_as_data(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True)
    # The data directory says a database existed, and it is gone.
    DatabaseMarker.beside(data_dir, settings.database_path, allow_new=False).write()
    before = dict(os.environ)

    refused = build_app(settings, host="127.0.0.1", port=8126, web_only=True, factory=Factory())
    with pytest.raises(Exception, match="UPSCALE_ALLOW_NEW_DATABASE"):
        await _ready(refused)

    allowed = build_app(
        settings,
        host="127.0.0.1",
        port=8126,
        web_only=True,
        allow_new_database=True,
        factory=Factory(),
    )
    assert await _ready(allowed) == 200
    assert dict(os.environ) == before
    assert settings.allow_new_database is False  # the caller's settings are left as they were


def test_server_runs_the_app_object_with_the_listener_options(tmp_path: Path) -> None:
    settings = _settings(tmp_path, UPSCALE_LIMIT_CONCURRENCY="7", UPSCALE_MAX_HEADER_BYTES="9000")
    app = Starlette()

    config = build_server(settings, app, host="127.0.0.1", port=8127).config

    assert config.app is app
    assert (config.host, config.port) == ("127.0.0.1", 8127)
    assert config.access_log is False
    assert config.log_config is None
    assert config.lifespan == "on"
    expected = server_options(settings)
    assert config.proxy_headers is False
    assert config.limit_concurrency == 7 == expected["limit_concurrency"]
    assert config.h11_max_incomplete_event_size == 9000
    assert config.timeout_keep_alive == expected["timeout_keep_alive"]
    # The guarded protocol: header deadline and 431 (orchestrator/service/listener.py).
    assert not isinstance(config.http, str)
    assert config.http.__name__ == "GuardedProtocol"


def test_a_failed_start_up_exits_with_uvicorns_code(tmp_path: Path) -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    server = build_server(_settings(tmp_path), broken, host="127.0.0.1", port=0)
    # uvicorn exits by itself when the lifespan fails; otherwise run_server says so.
    try:
        code: object = run_server(server)
    except SystemExit as exc:
        code = exc.code
    assert code == 3
