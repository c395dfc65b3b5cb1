"""LISTEN on a channel over a dedicated connection, reconnecting when it drops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from orchestrator.store.postgres_conn import ListenConn, connect
from schemas.errors import StoreUnavailable

log = logging.getLogger(__name__)


class ChannelListener:
    """Calls ``on_payload`` with each notification's payload on ``channel``.

    If the connection is lost, it reconnects in the background (backing off up to
    ``max_backoff_s``) and calls ``on_reconnect``: notifications sent meanwhile
    were missed, so whoever waits on them should look for itself.
    """

    def __init__(
        self,
        dsn: str,
        channel: str,
        on_payload: Callable[[str], None],
        *,
        on_reconnect: Callable[[], None] | None = None,
        max_backoff_s: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._on_payload = on_payload
        self._on_reconnect = on_reconnect
        self._max_backoff_s = max_backoff_s
        self._conn: ListenConn | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._stopped = True

    async def start(self) -> None:
        self._stopped = False
        self._conn = await self._listen()

    async def stop(self) -> None:
        self._stopped = True
        task, self._reconnecting = self._reconnecting, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await conn.remove_listener(self._channel, self._notified)
            await conn.close(timeout=5.0)

    async def _listen(self) -> ListenConn:
        conn = await connect(self._dsn)
        try:
            await conn.add_listener(self._channel, self._notified)
        except BaseException:
            await conn.close(timeout=5.0)
            raise
        conn.add_termination_listener(self._terminated)
        return conn

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._on_payload(payload)

    def _terminated(self, _conn: object) -> None:
        if self._stopped or self._reconnecting is not None:
            return
        self._conn = None
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        backoff = 0.1
        while not self._stopped:
            try:
                conn = await self._listen()
            except StoreUnavailable as exc:
                log.warning("event listener reconnect failed: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
                continue
            if self._stopped:
                await conn.close(timeout=5.0)
                return
            self._conn = conn
            self._reconnecting = None
            if self._on_reconnect is not None:
                self._on_reconnect()
            return
