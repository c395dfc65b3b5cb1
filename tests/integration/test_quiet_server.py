"""The server does not wake while it has nothing to do, yet answers with a current
Date header after a quiet spell (renewed by the listener's protocol), and exits at
once when told to."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import pytest

from orchestrator.common.settings import load_settings
from orchestrator.service import listener
from orchestrator.service.quiet_server import QuietServer


async def _app(scope: dict[str, object], receive: object, send: object) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]


class CountingServer(QuietServer):
    """Counts the main loop's ticks."""

    ticks = 0

    async def on_tick(self, counter: int) -> bool:
        self.ticks += 1
        return await super().on_tick(counter)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[CountingServer, str, asyncio.Task[None]]]:
    port = _free_port()
    settings = load_settings({"UPSCALE_DATA_DIR": str(tmp_path)})
    # As every listening command builds it: the listener's protocol and options.
    config = listener.server(settings, _app, host="127.0.0.1", port=port).config
    config.lifespan = "off"
    server = CountingServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield server, f"http://127.0.0.1:{port}/", task
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 5)


async def _date_of_answer(url: str) -> float:
    # A connection of its own, closed after the answer.
    async with httpx.AsyncClient(trust_env=False) as client:
        answer = await client.get(url, headers={"connection": "close"})
    assert answer.status_code == 200
    return parsedate_to_datetime(answer.headers["date"]).timestamp()


async def test_an_idle_server_does_not_tick_and_still_answers_with_the_date(
    served: tuple[CountingServer, str, asyncio.Task[None]],
) -> None:
    server, url, _ = served
    await _date_of_answer(url)
    await asyncio.sleep(0.3)  # the connection is gone
    idle_from = server.ticks
    await asyncio.sleep(2.5)
    # uvicorn's own loop would have ticked 25 times.
    assert server.ticks == idle_from
    date = await _date_of_answer(url)
    assert abs(date - time.time()) < 1.5  # renewed by the first request of its second


async def test_a_server_told_to_exit_stops_at_once(
    served: tuple[CountingServer, str, asyncio.Task[None]],
) -> None:
    server, url, task = served
    await _date_of_answer(url)
    await asyncio.sleep(1.5)  # resting, no tick due
    told = time.monotonic()
    server.should_exit = True
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - told < 0.6
