"""The console's pages with a large history: 100,000 jobs and 300,000 callback
deliveries (plus their history, events and outbound deliveries), every list page and
the pages of one job, one delivery and one subscription, timed over HTTP against the
real app in this process (httpx's ASGI transport: no network, no listener).

The bar (issue 15): every list page under 100 ms. Each figure is the median of
several requests, taken in turns with the others so that a busy moment of the
machine spreads over all of them; the baseline is ``GET /healthz`` timed the same way.

    python -m tests.bench --only console [--quick]
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx

from orchestrator.common.settings import load_settings
from orchestrator.service.runtime import Runtime, build_runtime
from orchestrator.store.protocol import DeliveryStatus
from receiver.app import create_app
from tests.bench.console_seed import Seeded, history, write_postgres, write_sqlite
from tests.bench.util import Row, fmt, note, yes_no

TOKEN = "bench-token"
BASE = "http://testserver"
TARGET_MS = 100.0


@asynccontextmanager
async def _service(
    data: Path, database_url: str | None
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    env = {
        "UPSCALE_DATA_DIR": str(data),
        "UPSCALE_API_TOKENS": TOKEN,
        "UPSCALE_SECRET_KEYS": "bench-secret-key",
    }
    if database_url is not None:
        env["UPSCALE_DATABASE_URL"] = database_url
    settings = load_settings(env)
    runtime = build_runtime(settings, listen_url=BASE, bind_host="127.0.0.1", run_loops=False)
    app = create_app(runtime, with_sandbox=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url=BASE,
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as client,
    ):
        yield runtime, client


def pages(s: Seeded) -> dict[str, str]:
    """Figure name -> path: every list verb the console's pages read, with each filter."""
    return {
        "jobs: newest": "/v1/jobs",
        "jobs: state=failed": "/v1/jobs?state=failed",
        "jobs: state=uncertain": "/v1/jobs?state=uncertain",
        "jobs: rare provider": f"/v1/jobs?provider={s.rare_provider}",
        "jobs: provider+state": f"/v1/jobs?provider={s.rare_provider}&state=failed",
        "jobs: fetching+provider": f"/v1/jobs?provider={s.rare_provider}&state=fetching",
        "jobs: operation=replace": "/v1/jobs?operation=replace",
        "jobs: since=1h": "/v1/jobs?since=1h",
        "jobs: second page": f"/v1/jobs?after={s.middle_job_id}",
        "job page": f"/v1/jobs/{s.job_id}",
        "job history": f"/v1/jobs/{s.job_id}/history",
        "inbox: newest": "/v1/deliveries",
        "inbox: status=dead": "/v1/deliveries?status=dead",
        "inbox: common provider": f"/v1/deliveries?provider={s.common_provider}",
        "inbox: rare provider": f"/v1/deliveries?provider={s.rare_provider}",
        "inbox: dead+provider": f"/v1/deliveries?status=dead&provider={s.rare_provider}",
        "inbox: unmatched+provider": (
            f"/v1/deliveries?status=unmatched&provider={s.rare_provider}"
        ),
        "inbox: since=1h": "/v1/deliveries?since=1h",
        "inbox: of one job": f"/v1/deliveries?job_id={s.job_id}",
        "delivery page": f"/v1/deliveries/{s.delivery_id}",
        "events": "/v1/events",
        "events: one type": "/v1/events?type=job.failed",
        "subscriptions": "/v1/subscriptions",
        "subscription deliveries": f"/v1/subscriptions/{s.subscription_id}/deliveries",
        "providers": "/v1/providers",
    }


async def _time(client: httpx.AsyncClient, path: str) -> float:
    t0 = time.perf_counter()
    answer = await client.get(path)
    elapsed = (time.perf_counter() - t0) * 1000
    if answer.status_code != 200:
        raise RuntimeError(f"GET {path}: {answer.status_code} {answer.text[:200]}")
    return elapsed


def _overview(runtime: Runtime) -> dict[str, Callable[[], Awaitable[object]]]:
    """The overview's aggregates, read through the store's verbs (figure -> call)."""
    store = runtime.store
    now = runtime.orchestrator.clock.now()
    return {
        "overview: jobs last hour": lambda: store.job_counts(since=now - timedelta(hours=1)),
        "overview: jobs last day": lambda: store.job_counts(since=now - timedelta(days=1)),
        "overview: dead deliveries": lambda: store.count_deliveries(DeliveryStatus.DEAD),
        "overview: unmatched": lambda: store.count_deliveries(DeliveryStatus.UNMATCHED),
        "overview: stuck jobs": lambda: store.count_stuck(created_before=now - timedelta(hours=1)),
    }


async def _time_call(call: Callable[[], Awaitable[object]]) -> float:
    t0 = time.perf_counter()
    await call()
    return (time.perf_counter() - t0) * 1000


async def _measure(quick: bool, database_url: str | None) -> list[Row]:
    jobs, deliveries = (10_000, 30_000) if quick else (100_000, 300_000)
    rounds = 5 if quick else 15
    kind = "sqlite" if database_url is None else "postgres"
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        data = Path(tmp) / "data"
        async with _service(data, database_url) as (runtime, _):  # migrates
            providers = sorted(runtime.providers)
            now = runtime.orchestrator.clock.now()
        t0 = time.perf_counter()
        rows, seeded = history(jobs=jobs, deliveries=deliveries, providers=providers, now=now)
        if database_url is None:
            write_sqlite(runtime.settings.database_path, rows)
        else:
            await write_postgres(database_url, rows)
        took = time.perf_counter() - t0
        note(f"  {kind}: seeded {jobs:,} jobs, {deliveries:,} deliveries in {took:.1f} s")
        async with _service(data, database_url) as (runtime, client):
            targets = {"baseline: GET /healthz": "/healthz", **pages(seeded)}
            times: dict[str, list[float]] = {name: [] for name in targets}
            calls = _overview(runtime)
            times.update({name: [] for name in calls})
            for path in targets.values():  # warm up: caches, first-use imports
                await _time(client, path)
            for _ in range(rounds):
                for name, path in targets.items():
                    times[name].append(await _time(client, path))
                for name, call in calls.items():
                    times[name].append(await _time_call(call))
    base = statistics.median(times.pop("baseline: GET /healthz"))
    label = f"{kind}, {jobs // 1000}k jobs / {deliveries // 1000}k deliveries"
    out = [Row("console", f"GET /healthz ({label})", f"{fmt(base, 2)} ms")]
    worst = (0.0, "")
    for name, samples in times.items():
        median = statistics.median(samples)
        worst = max(worst, (median, name))
        out.append(
            Row(
                "console",
                f"{kind}: {name}",
                f"{fmt(median, 1)} ms",
                baseline=f"{fmt(base, 2)} ms",
                ratio=f"{median / base:.1f}x",
                target=f"< {TARGET_MS:.0f} ms",
                met=yes_no(median < TARGET_MS),
            )
        )
    note(f"  {kind}: slowest figure {worst[1]} at {worst[0]:.1f} ms")
    return out


async def _postgres(quick: bool) -> list[Row]:
    """The same on a throwaway PostgreSQL database, when one is reachable."""
    from tests.postgres_db import create_database, drop_database, migrated_and_empty

    try:
        dsn = await create_database()
    except (OSError, TimeoutError, ConnectionError) as exc:
        note(f"  postgres: skipped, not reachable ({type(exc).__name__}: {exc})")
        return []
    try:
        return await _measure(quick, await migrated_and_empty(dsn))
    finally:
        await drop_database(dsn)


def run(quick: bool) -> list[Row]:
    rows = asyncio.run(_measure(quick, None))
    if not quick:
        rows += asyncio.run(_postgres(quick))
    return rows


if __name__ == "__main__":
    from tests.bench.util import print_table

    print_table(run(quick=False))
