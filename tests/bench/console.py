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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from orchestrator.common.settings import load_settings
from orchestrator.service.runtime import Runtime, build_runtime
from receiver.app import create_app
from tests.bench.console_seed import Seeded, history, write_postgres, write_sqlite
from tests.bench.util import Row, fmt, note, yes_no

TOKEN = "bench-token"
BASE = "http://testserver"
ORIGIN = {"origin": BASE}
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
    runtime = build_runtime(
        # Sandboxed providers' calls (the providers page asks their balance) go to a
        # closed port on this machine: refused at once, never off it.
        settings,
        listen_url="http://127.0.0.1:9",
        bind_host="127.0.0.1",
        run_loops=False,
    )
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
    """Figure name -> path: every console page, the lists with each filter."""
    rare, common = s.rare_provider, s.common_provider
    return {
        "overview": "/console/",
        "jobs: newest": "/console/jobs",
        "jobs: state=failed": "/console/jobs?state=failed",
        "jobs: state=uncertain": "/console/jobs?state=uncertain",
        "jobs: rare provider": f"/console/jobs?provider={rare}",
        "jobs: provider+state": f"/console/jobs?provider={rare}&state=failed",
        "jobs: fetching+provider": f"/console/jobs?provider={rare}&state=fetching",
        "jobs: operation=replace": "/console/jobs?operation=replace",
        "jobs: since=1h": "/console/jobs?since=1h",
        "jobs: before 20 days ago": f"/console/jobs?until={s.until}",
        "jobs: metadata text": "/console/jobs?q=c996",
        "jobs: metadata text, no match": "/console/jobs?q=nowhere",
        "jobs: two letters, no match": "/console/jobs?q=zq",
        "jobs: second page": f"/console/jobs?after={s.middle_job_id}",
        "job page": f"/console/jobs/{s.job_id}",
        "inbox: newest": "/console/inbox",
        "inbox: status=dead": "/console/inbox?status=dead",
        "inbox: common provider": f"/console/inbox?provider={common}",
        "inbox: rare provider": f"/console/inbox?provider={rare}",
        "inbox: dead+provider": f"/console/inbox?status=dead&provider={rare}",
        "inbox: unmatched+provider": f"/console/inbox?status=unmatched&provider={rare}",
        "inbox: since=1h": "/console/inbox?since=1h",
        "inbox: second page": f"/console/inbox?after={s.middle_delivery_id}",
        "delivery page": f"/console/inbox/{s.delivery_id}",
        "replay dead: the count": "/console/inbox/replay?since=7d",
        "events": "/console/events",
        "events: one type": "/console/events?type=job.failed",
        "subscriptions": "/console/subscriptions",
        "subscription page": f"/console/subscriptions/{s.subscription_id}",
        "providers": "/console/providers",
    }


async def _time(client: httpx.AsyncClient, path: str) -> float:
    t0 = time.perf_counter()
    answer = await client.get(path)
    elapsed = (time.perf_counter() - t0) * 1000
    if answer.status_code != 200:
        raise RuntimeError(f"GET {path}: {answer.status_code} {answer.text[:200]}")
    return elapsed


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
        del rows  # a million tuples: not the pages' garbage to collect
        note(f"  {kind}: seeded {jobs:,} jobs, {deliveries:,} deliveries in {took:.1f} s")
        async with _service(data, database_url) as (runtime, client):
            signed = await client.post(
                "/console/signin", data={"token": TOKEN, "next": "/console/"}, headers=ORIGIN
            )
            if signed.status_code != 303:
                raise RuntimeError(f"console sign-in: {signed.status_code} {signed.text[:200]}")
            targets = {"baseline: GET /healthz": "/healthz", **pages(seeded)}
            times: dict[str, list[float]] = {name: [] for name in targets}
            for path in targets.values():  # warm up: caches, first-use imports
                await _time(client, path)
            for _ in range(rounds):
                for name, path in targets.items():
                    times[name].append(await _time(client, path))
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
