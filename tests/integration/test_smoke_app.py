from __future__ import annotations

from tests.conftest import AppFactory


async def test_health(app_factory: AppFactory) -> None:
    async with app_factory() as (_, _, client):
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).json() == {"status": "ready"}
