"""Benchmark 1b: the callback ack path on PostgreSQL, one and two web processes.

``upscale serve --web-only`` (a web process beside workers) on a fresh PostgreSQL
database, and the same app under ``uvicorn --workers 2`` (two processes on one
listening socket), against the bare Starlette endpoint, in turn, at 32 and 128
connections. Every 200 must be a committed row: the benchmark counts the rows
(``received`` and ``deliveries``) against the 200s answered.

    python -m tests.bench.postgres_ack [--duration S] [--rounds N]

Needs the PostgreSQL server of the tests (``UPSCALE_TEST_POSTGRES_DSN``, by
default the local one with trust auth); skipped when it cannot be reached.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from tests.bench.callbacks import (
    CONCURRENCIES,
    TARGET_RATIO,
    Load,
    LoadResult,
    _check_callback,
    callback_path,
    combine,
    interleaved,
    service_env,
)
from tests.bench.util import (
    Row,
    ServerProc,
    clean_env,
    free_port,
    note,
    print_table,
    service_proc,
    uvicorn_proc,
)
from tests.postgres_db import create_database, drop_database, run_sync


async def _migrate(dsn: str) -> None:
    from orchestrator.store.postgres import PostgresStore

    await PostgresStore(dsn).migrate()


async def _count_rows(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        received = await conn.fetchval("SELECT COUNT(*) FROM received")
        filed = await conn.fetchval("SELECT COUNT(*) FROM deliveries")
    finally:
        await conn.close()
    return int(received) + int(filed)


def measure(
    workdir: Path, *, seconds: float, rounds: int, warmup_s: float
) -> tuple[dict[tuple[str, int], LoadResult], dict[str, Any]]:
    load = Load(workdir)
    path = callback_path()
    dsns = {name: run_sync(create_database) for name in ("1 web process", "2 web processes")}
    servers: dict[str, ServerProc] = {}
    results: dict[tuple[str, int], LoadResult] = {}
    info: dict[str, Any] = {"stored": {}, "answered_200": {}}
    try:
        bport = free_port()
        servers["bare"] = uvicorn_proc(
            "tests.bench.serve:bare_app", bport, clean_env(), workdir / "bare.log"
        )
        for workers, (name, dsn) in enumerate(dsns.items(), start=1):
            run_sync(lambda dsn=dsn: _migrate(dsn))  # type: ignore[misc]
            port = free_port()
            env = service_env(
                workdir / f"pg-{workers}",
                port,
                UPSCALE_DATABASE_URL=dsn,
                UPSCALE_RUN_LOOPS="false",
            )
            log = workdir / f"pg-{workers}.log"
            if workers == 1:
                servers[name] = service_proc(port, env, log, web_only=True)
            else:
                # Processes sharing one listening socket: the app under uvicorn --workers.
                servers[name] = uvicorn_proc(
                    "receiver.asgi:app", port, env, log, health_path="/healthz", workers=workers
                )
        for server in servers.values():
            server.start()
        for server in servers.values():
            _check_callback(server.port, path)
        for conns in CONCURRENCIES:
            runs = interleaved(load, servers, path, conns, seconds, rounds, warmup_s)
            for name, rs in runs.items():
                results[(name, conns)] = combine(rs)
        for name, dsn in dsns.items():
            info["stored"][name] = run_sync(lambda dsn=dsn: _count_rows(dsn))  # type: ignore[misc]
            info["answered_200"][name] = load.answered[servers[name].port] + 1
    finally:
        for server in servers.values():
            server.stop()
        for dsn in dsns.values():
            run_sync(lambda dsn=dsn: drop_database(dsn))  # type: ignore[misc]
    return results, info


def rows_for(results: dict[tuple[str, int], LoadResult], info: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for name in ("1 web process", "2 web processes"):
        for conns in CONCURRENCIES:
            svc, bare = results.get((name, conns)), results.get(("bare", conns))
            if svc is None or bare is None:
                continue
            ratio = svc.rps / bare.rps if bare.rps else 0.0
            rows.append(
                Row(
                    "1b callback ack, PostgreSQL",
                    f"{name}, rps @{conns} (p99 ms)",
                    f"{svc.rps:,.0f} ({svc.p99_ms:.1f})",
                    f"{bare.rps:,.0f} ({bare.p99_ms:.1f}) bare",
                    f"{ratio:.2f}",
                    f">= {TARGET_RATIO:.2f} x bare",
                    "yes" if ratio >= TARGET_RATIO and svc.errors == 0 else "NO",
                )
            )
        stored, answered = info["stored"].get(name, 0), info["answered_200"].get(name, 0)
        rows.append(
            Row(
                "1b callback ack, PostgreSQL",
                f"{name}: rows stored / 200s",
                f"{stored:,} / {answered:,}",
                target="every 200 committed",
                met="yes" if stored >= answered else "NO",
            )
        )
    return rows


def run(
    quick: bool = False, *, duration: float | None = None, rounds: int | None = None
) -> list[Row]:
    if quick:
        return [Row("1b callback ack, PostgreSQL", "not run in --quick", "-")]
    try:
        run_sync(_probe)
    except (OSError, asyncpg.PostgresError) as exc:
        return [Row("1b callback ack, PostgreSQL", "skipped: no PostgreSQL", type(exc).__name__)]
    seconds = duration or 5.0
    rounds = rounds or 3
    workdir = Path(tempfile.mkdtemp(prefix="bench-pg-callbacks-"))
    try:
        note(
            f"[1b] callback ack on PostgreSQL, web processes only ({rounds} round(s) x "
            f"{seconds:.0f} s per point)"
        )
        results, info = measure(workdir, seconds=seconds, rounds=rounds, warmup_s=2.0)
        return rows_for(results, info)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _probe() -> None:
    from tests.postgres_db import ADMIN_DSN

    conn = await asyncpg.connect(ADMIN_DSN, timeout=5)
    await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=None, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    print_table(run(duration=args.duration, rounds=args.rounds))


if __name__ == "__main__":
    main()
