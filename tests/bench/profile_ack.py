"""Where the callback ack path's time goes, microsecond by microsecond.

    python -m tests.bench.profile_ack [--n 3000] [--load-seconds 5] [--no-load]

Part 1 drives the ASGI apps in this process, with no network, so each figure is
the CPU of the event-loop thread alone for one request (mean of ``--n``):

* the bare Starlette endpoint (the benchmark's baseline) and the service's app on
  a constant route (``GET /healthz``): what the app costs before any handler;
  the same with the middleware left out (the router called directly), and the
  route table's matching alone;
* the callback handler's pieces: token check, body read, kept headers, the
  delivery's hash and id; the hand-off's: the delivery record, a future awaited
  for one loop turn, and the same woken from another thread (the writer's thread,
  which commits only when the event loop cannot);
* a refused callback (bad token, 404) through the whole app;
* valid callbacks 128 at a time through the whole app into the real SQLite inbox:
  the event loop's CPU per request (handler, hand-off and commit included) and the
  inbox writer thread's CPU per row;
* the commit itself, per batch and per row, at batch sizes 1 to 512 and with
  ``synchronous`` NORMAL and FULL.

Part 2 runs the service under uvicorn with ``wrk`` (when installed) at 128
connections and reads each of its threads from ``/proc``: the share of the wall
time it ran on a core, waited for a core (run queue: other processes), or slept
(waiting for the network, the writer, or the interpreter lock). The event-loop
thread's on-core share is, within a few percent, the share of time the
interpreter lock is held for request handling.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request

from tests.bench.callbacks import (
    JOB_ID,
    PROVIDER,
    Load,
    _body,
    _check_callback,
    callback_path,
    have_wrk,
    service_env,
)
from tests.bench.util import clean_env, free_port, note, service_proc, uvicorn_proc

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


# -- driving an ASGI app in process -------------------------------------------------------


def scope_for(method: str, path: str, body: bytes = b"") -> dict[str, Any]:
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"bench-webhook/1.0"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def call(app: ASGIApp, method: str, path: str, body: bytes = b"") -> int:
    """One request through ``app``; its status."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])

    await app(scope_for(method, path, body), receive, send)
    return status


def thread_cpu_s(ident: int | None = None) -> float:
    """CPU seconds of one thread of this process (the calling one by default)."""
    if ident is None:
        return time.thread_time()
    return time.clock_gettime(time.pthread_getcpuclockid(ident))


async def per_call_us(fn: Callable[[int], Awaitable[Any]], n: int) -> float:
    """Mean event-loop CPU of ``await fn(i)``, sequentially, in microseconds."""
    for i in range(min(200, n)):  # warm caches and the token memory
        await fn(-i - 1)
    t0 = thread_cpu_s()
    for i in range(n):
        await fn(i)
    return (thread_cpu_s() - t0) / n * 1e6


def sync_us(fn: Callable[[int], Any], n: int) -> float:
    for i in range(min(200, n)):
        fn(-i - 1)
    t0 = thread_cpu_s()
    for i in range(n):
        fn(i)
    return (thread_cpu_s() - t0) / n * 1e6


# -- part 1 -------------------------------------------------------------------------------


async def in_process(workdir: Path, n: int) -> list[str]:
    os.environ.update(service_env(workdir / "data", 8000, UPSCALE_RUN_LOOPS="false"))
    from orchestrator.common.logs import TextFormatter
    from orchestrator.common.settings import load_settings
    from orchestrator.service.runtime import build_runtime
    from receiver.app import create_app
    from tests.bench.serve import bare_app

    # Logs as the service writes them (its text format at INFO), to a file.
    handler = logging.FileHandler(workdir / "service.log")
    handler.setFormatter(TextFormatter())
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger().setLevel(logging.INFO)
    runtime = build_runtime(load_settings(), listen_url="http://127.0.0.1:8000", run_loops=False)
    app = create_app(runtime, tune_gc=False)
    path = callback_path()
    bad = path[:-6] + "AAAAAA"
    body = _body("p", 0, 0)
    lines = ["part 1: CPU of the event-loop thread per request, in process (no network)"]

    def row(label: str, us: float, note_: str = "") -> None:
        lines.append(f"  {label:<58} {us:8.1f} us  {note_}")

    async with app.router.lifespan_context(app):
        await call(bare_app, "GET", "/nothing")  # the bare app builds its stack lazily
        bare = await per_call_us(lambda i: call(bare_app, "POST", path, body), n)
        row("bare Starlette POST (the baseline's whole app)", bare)
        health = await per_call_us(lambda i: call(app, "GET", "/healthz"), n)
        row("service GET /healthz (whole app)", health, f"{health - bare:+.1f} vs bare")
        router = await per_call_us(lambda i: call(app.router, "GET", "/healthz"), n)
        row("  the same, router only (no middleware)", router, f"middleware {health - router:.1f}")
        callback_route = app.router.routes[0]
        health_scope = scope_for("GET", "/healthz")

        def match_all(i: int) -> None:
            for route in app.router.routes:
                if route.matches(health_scope)[0].value == 2:
                    return

        matching = sync_us(match_all, n)
        row(
            f"  route table walk to /healthz ({len(app.router.routes)} routes)",
            matching,
            f"first route alone {sync_us(lambda i: callback_route.matches(health_scope), n):.1f}",
        )
        refused = await per_call_us(lambda i: call(app, "POST", bad, body), n)
        row("service POST callback, bad token -> 404 (whole app)", refused)
        unknown = await per_call_us(lambda i: call(app, "POST", "/nope", body), n)
        row("service POST unknown path -> 404 (whole app)", unknown)

        # The handler's pieces, on their own.
        token = path.rsplit("/", 1)[1]
        signer = runtime.callback_signer
        row(
            "  token check (remembered token)", sync_us(lambda i: signer.verify(PROVIDER, token), n)
        )

        async def read_body(i: int) -> bytes:
            pending = [{"type": "http.request", "body": body, "more_body": False}]

            async def receive() -> dict[str, Any]:
                return pending.pop()

            request = Request(scope_for("POST", path, body), receive)
            return await request.body()

        row("  Request + body read", await per_call_us(read_body, n))
        scope = scope_for("POST", path, body)
        kept = frozenset((b"content-type", b"user-agent", b"x-forwarded-for", b"x-request-id"))
        row(
            "  kept headers dict",
            sync_us(
                lambda i: {k.decode(): v.decode() for k, v in scope["headers"] if k in kept}, n
            ),
        )
        from orchestrator.common.ids import new_id

        now = datetime.now(UTC)
        row(
            "  dedupe hash + delivery id",
            sync_us(
                lambda i: (
                    hashlib.sha256(f"{PROVIDER}\0{JOB_ID}\0".encode() + body).hexdigest(),
                    new_id("dlv", now),
                ),
                n,
            ),
        )
        row(
            "  prometheus counter .inc()",
            sync_us(lambda i: runtime.metrics.callbacks_received.labels(PROVIDER).inc(), n),
        )

        # The hand-off's pieces: the record made of each delivery, the caller's wait on
        # its future (resolved by the commit at the end of the loop's turn), and the
        # same woken from the writer's thread (when the loop cannot write itself).
        from orchestrator.store.protocol import DeliveryStatus, NewDelivery

        def record(i: int) -> None:
            new = NewDelivery(
                id="dlv_x",
                provider=PROVIDER,
                claimed_job_id=JOB_ID,
                received_at=now,
                headers={"content-type": "application/json"},
                body=body,
                dedupe_key="0" * 64,
                source="live",
            )
            new.stored(DeliveryStatus.PENDING)

        row("  delivery record (NewDelivery + .stored())", sync_us(record, n))
        loop = asyncio.get_running_loop()

        async def waited(i: int) -> None:
            waiter: asyncio.Future[None] = loop.create_future()
            loop.call_soon(waiter.set_result, None)
            await waiter

        row("  future: create, resolve, await (one loop turn)", await per_call_us(waited, n))

        async def woken(i: int) -> None:
            waiter: asyncio.Future[None] = loop.create_future()
            loop.call_soon_threadsafe(waiter.set_result, None)
            await waiter

        row(
            "  the same through call_soon_threadsafe (self-pipe wake)",
            await per_call_us(woken, n),
            "from the writer's thread",
        )

        # Valid callbacks, 128 at a time, into the real inbox.
        writer_ident = await _writer_ident(app, path)
        rounds = max(4, n // 128)
        t_loop, t_writer, t_wall = thread_cpu_s(), thread_cpu_s(writer_ident), time.perf_counter()
        for r in range(rounds):
            statuses = await asyncio.gather(
                *(call(app, "POST", path, _body("c", r, i)) for i in range(128))
            )
            assert all(s == 200 for s in statuses), statuses
        total = rounds * 128
        loop_us = (thread_cpu_s() - t_loop) / total * 1e6
        writer_us = (thread_cpu_s(writer_ident) - t_writer) / total * 1e6
        wall_us = (time.perf_counter() - t_wall) / total * 1e6
        row("service POST valid callback, 128 at a time: event loop (commit included)", loop_us)
        row("  inbox writer thread, per row (only when the loop cannot write)", writer_us)
        row(
            "  wall per request (both threads, one core each at most)",
            wall_us,
            f"= {1e6 / wall_us:,.0f}/s in process",
        )
    return lines


async def _writer_ident(app: Any, path: str) -> int | None:
    """The inbox writer's thread (started when the store opens)."""
    await call(app, "POST", path, _body("first", 0, 0))
    for thread in threading.enumerate():
        if thread.name.startswith("inbox-writer"):
            return thread.ident
    return None


def commit_costs(workdir: Path) -> list[str]:
    """The inbox writer's transaction alone, on this thread: per batch and per row."""
    from orchestrator.store.protocol import NewDelivery
    from orchestrator.store.rows import received_values
    from orchestrator.store.sqlite_inbox import InboxWriter

    out = ["  commit of one group (the writer's transaction alone):"]
    now = datetime.now(UTC)
    for synchronous in ("NORMAL", "FULL"):
        db = workdir / f"commit-{synchronous}.db"
        asyncio.run(_migrated(db))
        writer = InboxWriter(db, synchronous=synchronous, busy_timeout_ms=5000, lock=asyncio.Lock())
        writer._con = writer._connect(5000, True)
        cells = []
        serial = 0
        for size in (1, 32, 128, 512):
            times = []
            for _ in range(max(3, 2048 // size)):
                batch = []
                for _ in range(size):
                    serial += 1
                    batch.append(
                        NewDelivery(
                            id=f"dlv_{serial:020d}",
                            provider=PROVIDER,
                            claimed_job_id=JOB_ID,
                            received_at=now,
                            headers={"content-type": "application/json"},
                            body=_body(synchronous, 0, serial),
                            dedupe_key=f"{synchronous}-{serial}",
                        )
                    )
                t0 = time.perf_counter()
                writer._write_batch([received_values(new) for new in batch])
                times.append(time.perf_counter() - t0)
            per_batch = statistics.median(times) * 1e6
            cells.append(f"{size}: {per_batch:,.0f} us ({per_batch / size:.1f}/row)")
        writer._con.close()
        out.append(f"    synchronous={synchronous:<6} " + "; ".join(cells))
    return out


async def _migrated(db: Path) -> None:
    from orchestrator.store.sqlite import SQLiteStore

    store = SQLiteStore(db)
    await store.open()
    await store.close()


# -- part 2 -------------------------------------------------------------------------------


def _threads(pid: int) -> dict[int, tuple[str, float, float]]:
    """Per thread: name, seconds on a core, seconds waiting on a run queue."""
    out: dict[int, tuple[str, float, float]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as fh:
                name = fh.read().strip()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                on_ns, wait_ns, _ = (int(x) for x in fh.read().split())
        except OSError:
            continue
        out[int(tid)] = (name, on_ns / 1e9, wait_ns / 1e9)
    return out


def under_load(workdir: Path, seconds: float, conns: int = 128) -> list[str]:
    if not have_wrk():
        return ["part 2: skipped (wrk not installed: apt-get install wrk)"]
    load = Load(workdir)
    path = callback_path()
    lines = [
        f"part 2: under wrk at {conns} connections, the bare endpoint and the service in turn; "
        "per thread of the server's process: on a core / waiting for a core / asleep"
    ]
    bport = free_port()
    bare = uvicorn_proc(
        "tests.bench.serve:bare_app", bport, clean_env(), workdir / "bare.log", health_path=None
    )
    with bare.start():
        for label, web_only in (
            ("serve --web-only", True),
            ("serve (inbox applied in the same process)", False),
        ):
            port = free_port()
            proc = service_proc(
                port,
                service_env(workdir / f"load-{port}", port),
                workdir / f"load-{port}.log",
                web_only=web_only,
            )
            with proc.start():
                _check_callback(port, path)
                load.run(proc, path, conns, 1.0)
                base = _loaded(load, bare, path, conns, seconds, "bare Starlette", lines)
                res = _loaded(load, proc, path, conns, seconds, label, lines)
            lines.append(f"    => {res / base:.2f} of bare")
    lines.append(
        "  The event-loop thread is the first (named like the process); on a core it holds "
        "the interpreter lock but for short system calls. 'waiting for a core' is time other "
        "processes (the load generator included) had the cores."
    )
    return lines


def _loaded(
    load: Load, server: Any, path: str, conns: int, seconds: float, label: str, lines: list[str]
) -> float:
    before, t0 = _threads(server.pid), time.perf_counter()
    res = load.run(server, path, conns, seconds)
    after, wall = _threads(server.pid), time.perf_counter() - t0
    lines.append(f"  {label}: {res.rps:,.0f} req/s, p99 {res.p99_ms:.1f} ms, errors {res.errors}")
    for tid, (name, on, waited) in sorted(after.items()):
        _, on0, waited0 = before.get(tid, (name, 0.0, 0.0))
        d_on, d_wait = on - on0, waited - waited0
        if d_on < 0.01 * wall:
            continue
        asleep = max(0.0, wall - d_on - d_wait)
        lines.append(
            f"    {name:<16} {100 * d_on / wall:5.1f}% / {100 * d_wait / wall:5.1f}% / "
            f"{100 * asleep / wall:5.1f}%  ({1e6 * d_on / max(1, res.requests):.1f} us on a "
            "core a request)"
        )
    return res.rps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=3000, help="requests per in-process figure")
    parser.add_argument("--load-seconds", type=float, default=5.0)
    parser.add_argument("--no-load", action="store_true", help="part 1 only")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="profile-ack-"))
    try:
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        for line in runner(in_process(workdir, args.n)):
            note(line)
        for line in commit_costs(workdir):
            note(line)
        if not args.no_load:
            for line in under_load(workdir, args.load_seconds):
                note(line)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
