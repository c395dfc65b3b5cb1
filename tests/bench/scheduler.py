"""Benchmark 3: scheduler scaling.

SQLite stores with N submitted jobs (N = 100, 10,000, 100,000; rows inserted
with SQL after the store's own migrations), of which a fixed number (50) are
due and keep coming due again; the rest are due only in an hour or more.

* steady: the real ``Orchestrator.run_forever`` against an Upsampler adapter
  whose HTTP client is an ``httpx.MockTransport`` answering IN_PROGRESS, with a
  poll policy that brings each of the 50 jobs due again after U(0, 2 s). The
  process CPU (``time.process_time``: every thread, aiosqlite's included) over a
  fixed wall time gives CPU per minute and CPU per due job (per poll);
* cycle: the cost of one loop cycle with nothing due (``process_inbox`` +
  ``run_due`` + ``_sleep_s``, what the loop does each time it wakes), and the
  query plans of the loop's statements;
* idle: ``run_forever`` with nothing due (100,000 jobs due in an hour, and an
  empty store), CPU as % of one core; and an idle service process (uvicorn,
  all its loops) for comparison.

    python -m tests.bench.scheduler [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from orchestrator.common.clock import SystemClock
from orchestrator.common.metrics import Metrics
from orchestrator.common.settings import Secret
from orchestrator.core.budgets import Budgets
from orchestrator.core.config import EngineConfig
from orchestrator.core.engine import Orchestrator
from orchestrator.domain.backoff import PollPolicy
from orchestrator.providers.upsampler import UpsamplerProvider
from orchestrator.security.signing import CallbackSigner, InputSigner
from orchestrator.store.sqlite import SQLiteStore
from tests.bench.util import (
    HOST,
    Row,
    clean_env,
    fmt,
    free_port,
    note,
    print_table,
    proc_cpu_s,
    uvicorn_proc,
    yes_no,
)

SIZES = (100, 10_000, 100_000)
DUE = 50
POLL_CAP_S = 2.0
TARGET_SCALING = 2.0
TARGET_IDLE_PCT = 1.0
T = TypeVar("T")


def _run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run on uvloop when installed, like the service."""
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro_fn())  # type: ignore[arg-type]


# -- stores ------------------------------------------------------------------------------


def build_store(path: Path, n: int, due: int) -> Path:
    """A migrated SQLite store with ``n`` submitted jobs, ``due`` of them due now."""
    path.parent.mkdir(parents=True, exist_ok=True)

    async def migrate() -> None:
        store = SQLiteStore(path)
        await store.open()
        await store.close()

    _run(migrate)
    now = time.time()

    def rows() -> Any:
        for i in range(n):
            nxt = now - 1.0 if i < due else now + 3600.0 + (i % 7200)
            yield (
                f"job_bench{i:020d}",
                "upsampler",
                "submitted",
                1,
                2.0,
                "{}",
                "null",
                "https://example.com/in.png",
                None,
                f"up{i:08d}",
                0,
                now,
                now,
                now + 2 * 86400,
                nxt,
            )

    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        with con:
            con.executemany(
                """INSERT INTO jobs (id, provider, state, version, scale, options, metadata,
                   input_url, input_key, provider_job_id, attempts, created_at, updated_at,
                   deadline_at, next_check_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                rows(),
            )
        con.execute("ANALYZE")
    finally:
        con.close()
    return path


def _budgets(store: SQLiteStore) -> Budgets:
    """No budget configured (no limit). Budgets take the store in newer versions."""
    if inspect.signature(Budgets).parameters:
        return Budgets(store)  # type: ignore[call-arg,unused-ignore]
    return Budgets()  # type: ignore[call-arg,unused-ignore]


class _NoInputs:
    """Polling never touches uploaded inputs (and InputStore's constructor changes)."""


class _NoFetch:
    async def fetch(self, url: str, key_stem: str, *, size: Any = None) -> Any:
        raise AssertionError("no fetches in this benchmark")

    async def store_bytes(self, data: bytes, key_stem: str, *, size: Any = None) -> Any:
        raise AssertionError("no fetches in this benchmark")


def make_orchestrator(
    store: SQLiteStore, workdir: Path
) -> tuple[Orchestrator, list[int], httpx.AsyncClient]:
    polls = [0]

    def answer(request: httpx.Request) -> httpx.Response:
        polls[0] += 1
        job = request.url.path.rsplit("/", 1)[1]
        return httpx.Response(200, json={"id": job, "status": "IN_PROGRESS"})

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    provider = UpsamplerProvider(
        client, base_url="http://provider.invalid/api/v1", api_key="k", submit_timeout_s=60
    )
    clock = SystemClock()
    keys = (Secret("bench-scheduler-key"),)
    orch = Orchestrator(
        config=EngineConfig(
            public_base=f"http://{HOST}:9",
            job_deadline_s=86400,
            submit_timeout_s=60,
            input_url_ttl_s=3600,
            poll=PollPolicy(grace_s=POLL_CAP_S, base_s=POLL_CAP_S, cap_s=POLL_CAP_S),
            stuck_after_s=1e9,
        ),
        store=store,
        providers={"upsampler": provider},
        fetcher=_NoFetch(),
        inputs=_NoInputs(),  # type: ignore[arg-type]
        callback_signer=CallbackSigner(keys, clock),
        input_signer=InputSigner(keys, clock),
        budgets=_budgets(store),
        clock=clock,
        rng=random.Random(7),
        metrics=Metrics(),
    )
    return orch, polls, client


# -- measurements ------------------------------------------------------------------------


def steady(path: Path, workdir: Path, seconds: float, warm_s: float) -> dict[str, float]:
    async def main() -> dict[str, float]:
        store = SQLiteStore(path)
        await store.open()
        orch, polls, client = make_orchestrator(store, workdir)
        stop = asyncio.Event()
        task = asyncio.create_task(orch.run_forever(stop, sole_process=True))
        try:
            await asyncio.sleep(warm_s)
            p0, cpu0, t0 = polls[0], time.process_time(), time.perf_counter()
            await asyncio.sleep(seconds)
            p1, cpu1, t1 = polls[0], time.process_time(), time.perf_counter()
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await client.aclose()
            await store.close()
        wall, cpu, n = t1 - t0, cpu1 - cpu0, p1 - p0
        return {
            "wall": wall,
            "cpu": cpu,
            "polls": n,
            "cpu_per_min": cpu / wall * 60,
            "polls_per_s": n / wall,
            "ms_per_due": 1000 * cpu / n if n else float("nan"),
        }

    return _run(main)


def idle_cycle(path: Path, workdir: Path, budget_s: float, max_cycles: int) -> dict[str, float]:
    """One loop cycle with nothing due, as the loop runs it each time it wakes."""

    async def main() -> dict[str, float]:
        store = SQLiteStore(path)
        await store.open()
        orch, _, client = make_orchestrator(store, workdir)
        try:
            await orch.process_inbox()
            await orch.run_due()
            await orch._sleep_s()
            parts = {"process_inbox": 0.0, "run_due": 0.0, "_sleep_s": 0.0}
            cycles = 0
            end = time.perf_counter() + budget_s
            cpu0 = time.process_time()
            while cycles < max_cycles and time.perf_counter() < end:
                t = time.perf_counter()
                await orch.process_inbox()
                t2 = time.perf_counter()
                await orch.run_due()
                t3 = time.perf_counter()
                await orch._sleep_s()
                t4 = time.perf_counter()
                parts["process_inbox"] += t2 - t
                parts["run_due"] += t3 - t2
                parts["_sleep_s"] += t4 - t3
                cycles += 1
            cpu = time.process_time() - cpu0
        finally:
            await client.aclose()
            await store.close()
        out = {k: 1000 * v / cycles for k, v in parts.items()}
        out["cpu_ms"] = 1000 * cpu / cycles
        out["cycles"] = cycles
        return out

    return _run(main)


def idle_loop(path: Path | None, workdir: Path, seconds: float, warm_s: float) -> float:
    """CPU % of one core of ``run_forever`` with nothing due."""

    async def main() -> float:
        store = SQLiteStore(path or workdir / "empty" / "upscale.db")
        await store.open()
        orch, _, client = make_orchestrator(store, workdir)
        stop = asyncio.Event()
        task = asyncio.create_task(orch.run_forever(stop, sole_process=True))
        try:
            await asyncio.sleep(warm_s)
            cpu0, t0 = time.process_time(), time.perf_counter()
            await asyncio.sleep(seconds)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await client.aclose()
            await store.close()
        return 100 * cpu / wall

    return _run(main)


def idle_service(workdir: Path, seconds: float) -> float:
    """CPU % of one core of an idle service process (uvicorn, every loop of the runtime)."""
    port = free_port()
    env = clean_env(
        UPSCALE_DATA_DIR=str(workdir / "svc"),
        UPSCALE_SECRET_KEYS="bench-scheduler-key",
        UPSCALE_API_TOKENS="bench",
        UPSCALE_LISTEN_URL=f"http://{HOST}:{port}",
    )
    proc = uvicorn_proc("receiver.asgi:app", port, env, workdir / "svc.log", health_path="/healthz")
    with proc.start():
        time.sleep(1.0)
        cpu0, t0 = proc_cpu_s(proc.pid), time.perf_counter()
        time.sleep(seconds)
        cpu, wall = proc_cpu_s(proc.pid) - cpu0, time.perf_counter() - t0
    return 100 * cpu / wall


_PLANS = {
    "lease_due SELECT": (
        "SELECT id FROM jobs WHERE next_check_at IS NOT NULL AND next_check_at <= ? "
        "AND state IN (?,?,?,?) AND (lease_until IS NULL OR lease_until <= ?) "
        "ORDER BY next_check_at LIMIT ?",
        (0, "queued", "submitting", "submitted", "fetching", 0, 8),
    ),
    "next_due_at": (
        "SELECT MIN(MAX(next_check_at, COALESCE(lease_until, 0))) FROM jobs "
        "WHERE next_check_at IS NOT NULL AND state IN (?,?,?,?)",
        ("queued", "submitting", "submitted", "fetching"),
    ),
    "(idea, not product code) earliest next_check_at by index": (
        "SELECT next_check_at, lease_until FROM jobs WHERE next_check_at IS NOT NULL "
        "AND state IN (?,?,?,?) ORDER BY next_check_at LIMIT 64",
        ("queued", "submitting", "submitted", "fetching"),
    ),
    "pending_deliveries": (
        "SELECT * FROM deliveries WHERE status = 'pending' AND processed_at IS NULL "
        "ORDER BY received_at LIMIT ?",
        (100,),
    ),
}


def query_plans(path: Path) -> list[str]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    out = []
    try:
        for name, (sql, params) in _PLANS.items():
            plan = con.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
            started = time.perf_counter()
            for _ in range(20):
                con.execute(sql, params).fetchall()
            ms = (time.perf_counter() - started) / 20 * 1000
            out.append(f"    {name}: {' / '.join(r[-1] for r in plan)}  ({ms:.2f} ms raw sqlite3)")
    finally:
        con.close()
    return out


# -- the benchmark -----------------------------------------------------------------------


def run(quick: bool = False) -> list[Row]:
    seconds, warm = (2.0, 0.7) if quick else (15.0, 2.0)
    idle_s = 2.0 if quick else 10.0
    note(
        f"[3/4] scheduler scaling ({DUE} due, polled again after U(0, {POLL_CAP_S:.0f} s); "
        f"{seconds:.0f} s per size)"
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench-scheduler-"))
    rows: list[Row] = []
    try:
        steady_res: dict[int, dict[str, float]] = {}
        cycle_res: dict[int, dict[str, float]] = {}
        plans: list[str] = []
        for n in SIZES:
            started = time.perf_counter()
            template = build_store(workdir / f"t{n}" / "upscale.db", n, DUE)
            idle_db = build_store(workdir / f"i{n}" / "upscale.db", n, 0)
            built = time.perf_counter() - started
            steady_res[n] = s = steady(template, workdir, seconds, warm)
            cycle_res[n] = c = idle_cycle(idle_db, workdir, 0.5 if quick else 2.0, 500)
            note(
                f"  N={n:>7,}: {s['polls_per_s']:6.1f} polls/s  CPU {s['cpu_per_min']:5.1f} s/min"
                f"  {s['ms_per_due']:6.2f} ms CPU per due job | idle cycle "
                f"{c['process_inbox'] + c['run_due'] + c['_sleep_s']:.2f} ms (inbox "
                f"{c['process_inbox']:.2f}, run_due {c['run_due']:.2f}, next_due_at "
                f"{c['_sleep_s']:.2f}) [stores built in {built:.1f} s]"
            )
            if n == SIZES[-1]:
                plans = query_plans(idle_db)
        note(f"  query plans at N={SIZES[-1]:,}:")
        for line in plans:
            note(line)
        base = steady_res[SIZES[0]]
        for n in SIZES:
            s, c = steady_res[n], cycle_res[n]
            ratio = s["ms_per_due"] / base["ms_per_due"]
            rows.append(
                Row(
                    "3 scheduler",
                    f"CPU per due job, N={n:,}",
                    f"{s['ms_per_due']:.2f} ms",
                    f"{base['ms_per_due']:.2f} ms (N={SIZES[0]})",
                    f"{ratio:.2f}",
                    f"<= {TARGET_SCALING:.0f}x" if n == SIZES[-1] else "report",
                    yes_no(ratio <= TARGET_SCALING) if n == SIZES[-1] else "-",
                )
            )
            rows.append(
                Row(
                    "3 scheduler",
                    f"loop CPU s/min, N={n:,}",
                    f"{fmt(s['cpu_per_min'])} ({s['polls_per_s']:.0f} polls/s)",
                    f"{fmt(base['cpu_per_min'])} ({base['polls_per_s']:.0f} polls/s)",
                    f"{s['cpu_per_min'] / base['cpu_per_min']:.2f}",
                    "report",
                    "-",
                )
            )
            cyc = c["process_inbox"] + c["run_due"] + c["_sleep_s"]
            base_cyc = sum(cycle_res[SIZES[0]][k] for k in ("process_inbox", "run_due", "_sleep_s"))
            rows.append(
                Row(
                    "3 scheduler",
                    f"idle cycle ms, N={n:,}",
                    f"{cyc:.2f}",
                    f"{base_cyc:.2f}",
                    f"{cyc / base_cyc:.1f}",
                    "report",
                    "-",
                )
            )
        idle_big = idle_loop(workdir / f"i{SIZES[-1]}" / "upscale.db", workdir, idle_s, 1.0)
        rows.append(
            Row(
                "3 scheduler",
                f"idle loop CPU, N={SIZES[-1]:,} none due",
                f"{idle_big:.2f} % core",
                "-",
                "-",
                f"< {TARGET_IDLE_PCT:.0f} %",
                yes_no(idle_big < TARGET_IDLE_PCT),
            )
        )
        if not quick:
            idle_empty = idle_loop(None, workdir, idle_s, 1.0)
            rows.append(
                Row(
                    "3 scheduler",
                    "idle loop CPU, empty store",
                    f"{idle_empty:.2f} % core",
                    "-",
                    "-",
                    f"< {TARGET_IDLE_PCT:.0f} %",
                    yes_no(idle_empty < TARGET_IDLE_PCT),
                )
            )
        svc = idle_service(workdir, idle_s)
        rows.append(
            Row(
                "3 scheduler",
                "idle service process CPU",
                f"{svc:.2f} % core",
                "-",
                "-",
                "report",
                "-",
            )
        )
        note(
            f"  idle: loop {idle_big:.2f} % of a core with {SIZES[-1]:,} jobs not due; "
            f"whole idle service process {svc:.2f} %"
        )
        return rows
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print_table(run(args.quick))


if __name__ == "__main__":
    main()
