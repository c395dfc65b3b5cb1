"""Benchmark 1: the callback ack path.

Requests per second and p50/p99 latency of valid callbacks (token verified, raw
delivery committed to SQLite, 200 returned) at 32 and 128 concurrent connections,
against a bare Starlette endpoint that reads the body and returns 200, under plain
uvicorn (one worker, no access log, loop/http "auto"). Both servers run as subprocesses on
127.0.0.1; the load comes from ``wrk`` (one thread, a Lua script giving every
request its own body so none is stored as a duplicate) or, without wrk, from a
small multi-process asyncio load generator in this module.

The service runs as its users start it (``upscale serve --web-only``, and plain
``upscale serve`` with its loops on; the listener's guards on; INFO logs to a
file): under plain ``serve`` each stored callback is also parsed and marked
(unmatched: the token names a job id that does not exist) by the inbox loop in the
same process; and ``serve --web-only`` beside an ``upscale worker`` that does the
same in a process of its own on the same SQLite file.

    python -m tests.bench.callbacks [--quick] [--duration S] [--no-profile]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from orchestrator.common.clock import SystemClock
from orchestrator.common.settings import Secret
from orchestrator.security.signing import CallbackSigner
from tests.bench.util import (
    HOST,
    Row,
    ServerProc,
    children_cpu_s,
    clean_env,
    fmt,
    free_port,
    load_note,
    note,
    percentile,
    print_table,
    proc_cpu_s,
    service_proc,
    system_busy_s,
    uvicorn_proc,
    yes_no,
)

SECRET = "bench-secret-key-0123456789"
API_TOKEN = "bench-api-token"
PROVIDER = "upsampler"
JOB_ID = "job_bench0000000000000000000000"
CONCURRENCIES = (32, 128)
TARGET_RATIO = 0.75
TARGET_P99_MS = 15.0

_LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "bench-webhook/1.0"
local next_tid = 0
function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end
local n = 0
local run = "r"
function init(args)
  if args[1] ~= nil then run = args[1] end
end
function request()
  n = n + 1
  local body = string.format(
    '{"id":"up-%s-%s-%d","status":"SUCCESS","imageUrl":"https://cdn.example.com/r/%d.png",' ..
    '"compressedImageUrl":"https://cdn.example.com/r/%d.jpg","creditCost":4}',
    run, tid, n, n, n)
  return wrk.format(nil, nil, nil, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
"""


@dataclass
class LoadResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_s: float = 0.0
    loadgen_cpu_s: float = 0.0
    other_cpu_s: float = 0.0

    @property
    def other_cpu_pct(self) -> float:
        """CPU used meanwhile by processes that are neither the server nor the load
        generator (other work on the machine), in % of one core."""
        return 100.0 * self.other_cpu_s / self.seconds if self.seconds > 0 else 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def server_cpu_pct(self) -> float:
        return 100.0 * self.server_cpu_s / self.seconds if self.seconds > 0 else 0.0


def callback_path() -> str:
    signer = CallbackSigner((Secret(SECRET),), SystemClock())
    token = signer.for_job(PROVIDER, JOB_ID, time.time() + 7 * 86400)
    return f"/callbacks/{PROVIDER}/{token}"


def service_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    settings = {
        "UPSCALE_DATA_DIR": str(data_dir),
        "UPSCALE_SECRET_KEYS": SECRET,
        "UPSCALE_API_TOKENS": API_TOKEN,
        "UPSCALE_LISTEN_URL": f"http://{HOST}:{port}",
        "UPSCALE_LOG_LEVEL": "INFO",
        # A keyed provider, as deployed: a keyless one is unavailable (and its
        # callbacks 404) unless the sandbox is mounted. Nothing is submitted here.
        "UPSCALE_UPSAMPLER_API_KEY": "bench-key",
    }
    settings.update(extra)
    return clean_env(**settings)


# -- load generation -----------------------------------------------------------------------


def have_wrk() -> str | None:
    return shutil.which("wrk")


def run_wrk(
    wrk: str, script: Path, url: str, conns: int, seconds: float, run_id: str
) -> LoadResult:
    args = [wrk, "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    args += ["-s", str(script), url, "--", run_id]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=False)
    match = re.search(r"BENCHJSON (\{.*\})", out.stdout)
    if match is None:
        raise RuntimeError(f"wrk gave no result: {out.stdout}\n{out.stderr}")
    d = json.loads(match.group(1))
    errors = d["connect"] + d["read"] + d["write"] + d["status"] + d["timeout"]
    return LoadResult(
        requests=d["requests"],
        seconds=d["duration_us"] / 1e6,
        errors=errors,
        p50_ms=d["p50_us"] / 1000,
        p90_ms=d["p90_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
        max_ms=d["max_us"] / 1000,
    )


def _body(run_id: str, worker: int, n: int) -> bytes:
    return (
        f'{{"id":"up-{run_id}-{worker}-{n}","status":"SUCCESS",'
        f'"imageUrl":"https://cdn.example.com/r/{n}.png",'
        f'"compressedImageUrl":"https://cdn.example.com/r/{n}.jpg","creditCost":4}}'
    ).encode()


async def _one_connection(
    port: int, path: str, end: float, run_id: str, wid: int, lat: list[float], codes: Counter[int]
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    n = 0
    try:
        while time.perf_counter() < end:
            n += 1
            body = _body(run_id, wid, n)
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            started = time.perf_counter()
            writer.write(head + body)
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            status = int(raw.split(b" ", 2)[1])
            length = 0
            for line in raw.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            lat.append(time.perf_counter() - started)
            codes[status] += 1
    finally:
        writer.close()


def _loadgen_worker(args: tuple[int, str, int, float, str, int]) -> dict[str, Any]:
    port, path, conns, seconds, run_id, wid = args
    lat: list[float] = []
    codes: Counter[int] = Counter()

    async def main() -> None:
        end = time.perf_counter() + seconds
        await asyncio.gather(
            *(
                _one_connection(port, path, end, run_id, wid * 10_000 + i, lat, codes)
                for i in range(conns)
            ),
            return_exceptions=True,
        )

    started = time.perf_counter()
    asyncio.run(main())
    return {"lat": lat, "codes": dict(codes), "seconds": time.perf_counter() - started}


def run_loadgen(port: int, path: str, conns: int, seconds: float, run_id: str) -> LoadResult:
    """Fallback without wrk: asyncio raw-HTTP/1.1 clients in separate processes."""
    procs = max(1, min(2, conns // 16))
    per = [conns // procs + (1 if i < conns % procs else 0) for i in range(procs)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(procs) as pool:
        parts = pool.map(
            _loadgen_worker, [(port, path, per[i], seconds, run_id, i) for i in range(procs)]
        )
    lat = [x for p in parts for x in p["lat"]]
    ok = sum(p["codes"].get(200, 0) for p in parts)
    wall = max(p["seconds"] for p in parts)
    return LoadResult(
        requests=len(lat),
        seconds=wall,
        errors=len(lat) - ok,
        p50_ms=percentile(lat, 50) * 1000,
        p90_ms=percentile(lat, 90) * 1000,
        p99_ms=percentile(lat, 99) * 1000,
        max_ms=max(lat, default=0.0) * 1000,
    )


class Load:
    def __init__(self, workdir: Path) -> None:
        self.wrk = have_wrk()
        self.script = workdir / "callback.lua"
        self.script.write_text(_LUA)
        self._runs = 0
        self.answered: Counter[int] = Counter()  # successful answers per server port

    @property
    def tool(self) -> str:
        return "wrk -t1" if self.wrk else "asyncio load generator"

    def run(self, server: ServerProc, path: str, conns: int, seconds: float) -> LoadResult:
        self._runs += 1
        run_id = f"{os.getpid()}x{self._runs}x{time.monotonic_ns() % 10**9}"
        cpu0, kids0, busy0 = proc_cpu_s(server.pid), children_cpu_s(), system_busy_s()
        if self.wrk:
            url = f"http://{HOST}:{server.port}{path}"
            result = run_wrk(self.wrk, self.script, url, conns, seconds, run_id)
        else:
            result = run_loadgen(server.port, path, conns, seconds, run_id)
        result.server_cpu_s = proc_cpu_s(server.pid) - cpu0
        result.loadgen_cpu_s = children_cpu_s() - kids0
        busy = system_busy_s() - busy0
        result.other_cpu_s = max(0.0, busy - result.server_cpu_s - result.loadgen_cpu_s)
        self.answered[server.port] += result.requests - result.errors
        return result


# -- the benchmark -----------------------------------------------------------------------


def _check_callback(port: int, path: str) -> None:
    response = httpx.post(
        f"http://{HOST}:{port}{path}",
        content=b'{"id":"sanity","status":"IN_PROGRESS"}',
        headers={"content-type": "application/json"},
        timeout=10,
        trust_env=False,
    )
    if response.status_code != 200:
        raise RuntimeError(f"callback answered {response.status_code}: {response.text}")


def _stored(db: Path) -> dict[str, int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10, isolation_level=None)
    try:
        # One snapshot for both counts: the inbox pass moves rows from one table to the
        # other while the service runs, and two snapshots could miss the rows it moved.
        con.execute("BEGIN")
        rows = con.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status").fetchall()
        # Acknowledged and committed, not filed among the deliveries yet.
        (received,) = con.execute("SELECT COUNT(*) FROM received").fetchone()
    finally:
        con.close()
    stored = {str(s): int(n) for s, n in rows}
    if received:
        stored["received, not filed yet"] = int(received)
    return stored


def combine(runs: list[LoadResult]) -> LoadResult:
    """Several rounds of one point: the median round by rps, with every round's requests,
    errors and CPU added up (rps is total requests / total time)."""
    ordered = sorted(runs, key=lambda r: r.rps)
    mid = ordered[len(ordered) // 2]
    return (
        LoadResult(
            requests=sum(r.requests for r in runs),
            seconds=sum(r.seconds for r in runs),
            errors=sum(r.errors for r in runs),
            p50_ms=statistics.median(r.p50_ms for r in runs),
            p90_ms=statistics.median(r.p90_ms for r in runs),
            p99_ms=statistics.median(r.p99_ms for r in runs),
            max_ms=max(r.max_ms for r in runs),
            server_cpu_s=sum(r.server_cpu_s for r in runs),
            loadgen_cpu_s=sum(r.loadgen_cpu_s for r in runs),
            other_cpu_s=sum(r.other_cpu_s for r in runs),
        )
        if len(runs) > 1
        else mid
    )


def _describe(name: str, conns: int, res: LoadResult) -> str:
    return (
        f"  {name:<24} c={conns:<3} {res.rps:8.0f} rps  p50 {res.p50_ms:6.2f} ms  "
        f"p99 {res.p99_ms:6.2f} ms  errors {res.errors}  CPU: server {res.server_cpu_pct:.0f}%, "
        f"load gen {100 * res.loadgen_cpu_s / res.seconds:.0f}%, other processes "
        f"{res.other_cpu_pct:.0f}%"
    )


def interleaved(
    load: Load,
    servers: dict[str, ServerProc],
    path: str,
    conns: int,
    seconds: float,
    rounds: int,
    warmup_s: float,
) -> dict[str, list[LoadResult]]:
    """``rounds`` rounds, each server once per round in turn, so that other load on the
    machine falls on all of them alike. While one is loaded the others are paused
    (SIGSTOP): plain ``serve`` goes on filing its backlog after its own round, and
    would otherwise take a core from the server loaded next."""
    out: dict[str, list[LoadResult]] = {name: [] for name in servers}

    def alone(server: ServerProc, s: float) -> LoadResult:
        others = [other for other in servers.values() if other is not server]
        for other in others:
            other.pause()
        try:
            return load.run(server, path, conns, s)
        finally:
            for other in others:
                other.resume()

    if warmup_s > 0:
        for server in servers.values():
            alone(server, warmup_s)
    for _ in range(rounds):
        for name, server in servers.items():
            res = alone(server, seconds)
            out[name].append(res)
            note(_describe(name, conns, res))
    return out


# The service's shapes, as (web only, a worker beside it): a web process (``serve
# --web-only``: the ack path alone, workers apply the inbox), ``serve`` (the inbox
# applied in the same process), and a web process beside an ``upscale worker``
# filing and applying the inbox on the same SQLite file (the worker is paused with it).
SERVICES: dict[str, tuple[bool, bool]] = {
    "serve --web-only": (True, False),
    "serve": (False, False),
    "serve --web-only + worker": (True, True),
}


def measure(
    workdir: Path,
    *,
    seconds: float,
    rounds: int,
    warmup_s: float,
    conns_list: tuple[int, ...] = CONCURRENCIES,
) -> tuple[dict[tuple[str, int], LoadResult], dict[str, Any]]:
    load = Load(workdir)
    path = callback_path()
    results: dict[tuple[str, int], LoadResult] = {}
    info: dict[str, Any] = {"tool": load.tool, "stored": {}, "answered_200": {}}
    bare = uvicorn_proc(
        "tests.bench.serve:bare_app",
        free_port(),
        clean_env(),
        workdir / "bare.log",
        health_path=None,
    )
    try:
        bare.start()
        # One shape at a time, each against the bare endpoint in its own rounds: plain
        # ``serve`` goes on filing its backlog long after its rounds, which would take
        # a core from whatever else was measured meanwhile.
        for i, (name, (web_only, worker)) in enumerate(SERVICES.items()):
            port = free_port()
            server = service_proc(
                port,
                service_env(workdir / f"service-{i}", port),
                workdir / f"service-{i}.log",
                web_only=web_only,
                worker=worker,
            )
            try:
                server.start()
                _check_callback(server.port, path)
                phase = {"bare": bare, name: server}
                for conns in conns_list:
                    runs = interleaved(load, phase, path, conns, seconds, rounds, warmup_s)
                    results[(name, conns)] = combine(runs[name])
                    results[(f"bare/{name}", conns)] = combine(runs["bare"])
                if name == "serve --web-only":
                    # A flood of one bad URL at the web process: its CPU per 404.
                    refused = load.run(server, path[:-6] + "AAAAAA", max(conns_list), seconds)
                    info["refused"] = refused
            finally:
                server.stop()
            # Counted once the process is gone: every 200 it gave is a committed row.
            info["stored"][name] = _stored(workdir / f"service-{i}" / "upscale.db")
            info["answered_200"][name] = load.answered[port] + 1  # and the check
    finally:
        bare.stop()
    info["other_cpu_pct"] = statistics.mean(r.other_cpu_pct for r in results.values())
    return results, info


def measure_variants(
    workdir: Path, conns: int, seconds: float, rounds: int
) -> dict[str, LoadResult]:
    """The web process (``serve --web-only``) as deployed and under configuration
    changes (no code change), all running at once and loaded in turn. (The last runs
    the same app under plain uvicorn, whose loop and HTTP parser can be chosen.)"""
    load = Load(workdir)
    path = callback_path()
    variants: dict[str, dict[str, str]] = {
        "as deployed": {},
        "synchronous=FULL": {"UPSCALE_SQLITE_SYNCHRONOUS": "FULL"},
        "log level WARNING": {"UPSCALE_LOG_LEVEL": "WARNING"},
        "loop=asyncio http=h11": {"UPSCALE_RUN_LOOPS": "false"},
    }
    procs: dict[str, ServerProc] = {}
    try:
        for i, (name, extra) in enumerate(variants.items()):
            port = free_port()
            env = service_env(workdir / f"variant-{i}", port, **extra)
            log = workdir / f"variant-{i}.log"
            if name.startswith("loop="):
                proc = uvicorn_proc(
                    "receiver.asgi:app",
                    port,
                    env,
                    log,
                    health_path="/healthz",
                    loop="asyncio",
                    http="h11",
                )
            else:
                proc = service_proc(port, env, log, web_only=True)
            procs[name] = proc.start()
            _check_callback(port, path)
        runs = interleaved(load, procs, path, conns, seconds, rounds, 1.0)
    finally:
        for proc in procs.values():
            proc.stop()
    return {name: combine(rs) for name, rs in runs.items()}


def rows_for(results: dict[tuple[str, int], LoadResult], info: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for name in SERVICES:
        for conns in CONCURRENCIES:
            svc, bare = results.get((name, conns)), results.get((f"bare/{name}", conns))
            if svc is None or bare is None:
                continue
            ratio = svc.rps / bare.rps if bare.rps else 0.0
            rows.append(
                Row(
                    "1 callback ack",
                    f"{name}: rps @{conns} conns",
                    fmt(svc.rps),
                    fmt(bare.rps) + " (bare)",
                    f"{ratio:.2f}",
                    f">= {TARGET_RATIO:.2f} x bare",
                    yes_no(ratio >= TARGET_RATIO and svc.errors == 0),
                )
            )
            rows.append(
                Row(
                    "1 callback ack",
                    f"{name}: p50 / p99 ms @{conns}",
                    f"{svc.p50_ms:.2f} / {svc.p99_ms:.2f}",
                    f"{bare.p50_ms:.2f} / {bare.p99_ms:.2f}",
                    f"{svc.p99_ms / bare.p99_ms:.1f} (p99)" if bare.p99_ms else "-",
                    f"p99 < {TARGET_P99_MS:.0f} ms" if conns == 128 else "report",
                    yes_no(svc.p99_ms < TARGET_P99_MS) if conns == 128 else "-",
                )
            )
        stored = info["stored"].get(name, {})
        answered = info["answered_200"].get(name, 0)
        rows.append(
            Row(
                "1 callback ack",
                f"{name}: deliveries stored / 200s",
                f"{sum(stored.values()):,} / {answered:,}",
                "-",
                "-",
                "every 200 committed",
                yes_no(sum(stored.values()) >= answered),
            )
        )
    refused: LoadResult | None = info.get("refused")
    valid = results.get(("serve --web-only", max(CONCURRENCIES)))
    if refused is not None and valid is not None and refused.requests and valid.requests:
        per_404 = refused.server_cpu_s / refused.requests * 1e6
        per_200 = valid.server_cpu_s / valid.requests * 1e6
        rows.append(
            Row(
                "1 callback ack",
                "bad-token 404 flood: server CPU/request",
                f"{per_404:.0f} us ({refused.rps:,.0f} rps)",
                f"{per_200:.0f} us (valid)",
                f"{per_404 / per_200:.2f}",
                "<= 1.00 x valid",
                yes_no(per_404 <= per_200 and refused.errors == refused.requests),
            )
        )
    return rows


# -- profiling hints ---------------------------------------------------------------------


def _py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    candidate = Path("/tmp/pyspy-tool/bin/py-spy")
    return str(candidate) if candidate.exists() else None


def profile_with_py_spy(workdir: Path, conns: int, seconds: float) -> list[str]:
    """Sample the service under load with py-spy; the top frames by own time per thread."""
    spy = _py_spy()
    if spy is None:
        return ["py-spy not installed: skipped (pip install --target /tmp/pyspy-tool py-spy)"]
    load = Load(workdir)
    path = callback_path()
    port = free_port()
    proc = uvicorn_proc(
        "receiver.asgi:app",
        port,
        service_env(workdir / "pyspy-data", port),
        workdir / "pyspy-service.log",
        health_path="/healthz",
    )
    raw = workdir / "pyspy.txt"
    with proc.start():
        _check_callback(port, path)
        sampler = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(proc.pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                "250",
                "--format",
                "raw",
                "--threads",
                "--nonblocking",
                "-o",
                str(raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.5)
        res = load.run(proc, path, conns, seconds - 1)
        try:
            _, err = sampler.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            sampler.kill()
            _, err = sampler.communicate()
    if not raw.exists():
        return [f"py-spy failed: {err.decode(errors='replace')[-300:]}"]
    lines = [f"py-spy of the service at {conns} conns ({res.rps:.0f} rps during sampling):"]
    lines += summarise_collapsed(raw.read_text())
    return lines


_CALLBACK_MARKERS = (
    ("receive_callback (whole handler)", "receive_callback ("),
    ("  CallbackSigner.verify", "verify (orchestrator/security/signing.py"),
    ("  read_capped (body)", "read_capped ("),
    ("  Orchestrator.receive", "receive (orchestrator/core/engine.py"),
    ("    SQLiteStore.record_delivery", "record_delivery ("),
    ("    prometheus .inc()", "inc (prometheus_client"),
    ("  JSONResponse", "JSONResponse"),
    ("inbox loop: process_inbox", "process_inbox ("),
    ("inbox loop: process_delivery", "process_delivery ("),
    ("logging (all threads)", "(logging/__init__.py"),
    ("uvicorn httptools protocol", "httptools_impl.py"),
    ("starlette routing/middleware", "starlette/routing.py"),
)


_WAIT_FRAMES = (
    "Runner.run (asyncio/runners.py",  # uvloop's C loop (epoll included) under asyncio.run
    "_connection_worker_thread (aiosqlite/core.py:59)",  # the thread waiting on its queue
    "select (selectors.py",  # an idle thread's selector
    "Condition.wait (threading.py",  # waiting threads
    "_worker (concurrent/futures/thread.py:81)",  # an idle to_thread worker
)


def summarise_collapsed(text: str, top: int = 12) -> list[str]:
    """Aggregate py-spy's collapsed stacks: samples per thread, then, of the samples that
    run Python code (not the two wait frames), the inclusive share of the callback path's
    pieces and the top frames by own time."""
    per_thread: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = busy = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        per_thread[_thread_kind(frames[0])] += count
        leaf = frames[-1]
        if any(w in leaf for w in _WAIT_FRAMES):
            continue
        busy += count
        own[_short(leaf)] += count
        for label, marker in _CALLBACK_MARKERS:
            if any(marker in f for f in frames):
                inclusive[label] += count
    if busy == 0:
        return ["  (no samples)"]
    out = [f"  samples: {total}, of which {busy} in Python code (the rest: waiting frames)"]
    for thread, n in per_thread.most_common(5):
        out.append(f"  {thread}: {100 * n / total:.0f}% of samples")
    out.append("  inclusive share of the Python-code samples:")
    for label, _marker in _CALLBACK_MARKERS:
        out.append(f"    {label:<36} {100 * inclusive[label] / busy:5.1f}%")
    out.append("  top frames by own time (share of the Python-code samples):")
    for frame, n in own.most_common(top):
        out.append(f"    {100 * n / busy:5.1f}%  {frame}")
    return out


def _thread_kind(thread: str) -> str:
    name = thread.split(": ", 1)[-1]
    if name == "MainThread":
        return "MainThread (event loop)"
    if "_connection_worker_thread" in name:
        return "aiosqlite connection thread"
    return f"{name} (other)"


def _short(frame: str) -> str:
    return frame if len(frame) <= 110 else frame[:107] + "..."


def timing_breakdown(workdir: Path, conns: int, seconds: float) -> list[str]:
    """Run the service with timers around the callback path (tests/bench/instrumented.py)
    under load; where a callback's time goes."""
    load = Load(workdir)
    path = callback_path()
    port = free_port()
    stats = workdir / "timers.json"
    proc = uvicorn_proc(
        "tests.bench.instrumented:app",
        port,
        service_env(workdir / "timed-data", port, UPSCALE_BENCH_STATS=str(stats)),
        workdir / "timed-service.log",
        health_path="/healthz",
    )
    with proc.start():
        _check_callback(port, path)
        res = load.run(proc, path, conns, seconds)
    if not stats.exists():
        return ["timers: no figures written (see the instrumented service's log)"]
    data = json.loads(stats.read_text())
    counts = data["counts"]
    lines = [
        f"timers inside the service at {conns} conns ({res.rps:.0f} rps, client p50 "
        f"{res.p50_ms:.1f} ms, p99 {res.p99_ms:.1f} ms):"
    ]
    for name, t in data["timers"].items():
        lines.append(
            f"  {name:<46} n={t['n']:>7,}  mean {t['mean_ms']:7.3f}  p50 {t['p50_ms']:7.3f}  "
            f"p99 {t['p99_ms']:7.3f} ms"
        )
    if counts.get("callbacks"):
        per = counts.get("write transactions", 0) / counts["callbacks"]
        lines.append(
            f"  write transactions per callback (ack + inbox loop): {per:.2f}; all go through "
            "one asyncio.Lock (the inbox writer takes it once per group of callbacks)"
        )
    return lines


def micro_costs(workdir: Path, n: int) -> list[str]:
    """In-process costs of the pieces of the ack path (no HTTP)."""
    return asyncio.run(_micro(workdir, n))


async def _micro(workdir: Path, n: int) -> list[str]:
    from datetime import UTC, datetime

    from orchestrator.store.protocol import NewDelivery
    from orchestrator.store.sqlite import SQLiteStore

    token = callback_path().rsplit("/", 1)[1]
    t0 = time.perf_counter()
    for _ in range(n):
        CallbackSigner((Secret(SECRET),), SystemClock()).verify(PROVIDER, token)
    fresh_us = (time.perf_counter() - t0) / n * 1e6
    signer = CallbackSigner((Secret(SECRET),), SystemClock())
    t0 = time.perf_counter()
    for _ in range(n):
        signer.verify(PROVIDER, token)
    remembered_us = (time.perf_counter() - t0) / n * 1e6

    def new(i: int, tag: str) -> NewDelivery:
        return NewDelivery(
            id=f"dlv_{tag}{i:012d}",
            provider=PROVIDER,
            claimed_job_id=JOB_ID,
            received_at=datetime.now(UTC),
            headers={"content-type": "application/json"},
            body=_body(tag, 0, i),
            dedupe_key=f"{tag}-{i}",
            source="live",
        )

    lines = ["in-process costs of the ack path's pieces (no HTTP):"]
    lines.append(
        f"  CallbackSigner.verify: {fresh_us:.1f} us for a new token, "
        f"{remembered_us:.1f} us for one verified before"
    )
    for synchronous in ("NORMAL", "FULL"):
        store = SQLiteStore(workdir / "micro" / f"{synchronous}.db", synchronous=synchronous)
        await store.open()
        try:
            for i in range(50):  # warm
                await store.append_received(new(i, "w"))
            t0 = time.perf_counter()
            for i in range(n // 4):
                await store.append_received(new(i, "s"))
            seq_s = (time.perf_counter() - t0) / (n // 4)
            t0 = time.perf_counter()
            for start in range(0, n, 128):
                batch = range(start, min(n, start + 128))
                await asyncio.gather(*(store.append_received(new(i, "c")) for i in batch))
            conc_s = (time.perf_counter() - t0) / n
        finally:
            await store.close()
        lines.append(
            f"  append_received (the ack's commit), synchronous={synchronous}: one at a time "
            f"{1 / seq_s:,.0f}/s; 128 at a time (group commit) {1 / conc_s:,.0f}/s"
        )
    return lines


def run(
    quick: bool = False,
    *,
    profile: bool | None = None,
    variants: bool | None = None,
    duration: float | None = None,
    rounds: int | None = None,
) -> list[Row]:
    seconds = duration or (3.0 if quick else 5.0)
    rounds = rounds or (1 if quick else 3)
    warmup = 1.0 if quick else 2.0
    profile = (not quick) if profile is None else profile
    variants = (not quick) if variants is None else variants
    workdir = Path(tempfile.mkdtemp(prefix="bench-callbacks-"))
    try:
        load_tool = "wrk -t1" if have_wrk() else "asyncio load generator"
        note(
            f"[1/4] callback ack path ({load_tool}; {rounds} round(s) x {seconds:.0f} s per "
            f"point, bare and service in turn; {load_note()})"
        )
        results, info = measure(workdir, seconds=seconds, rounds=rounds, warmup_s=warmup)
        rows = rows_for(results, info)
        note(
            f"  deliveries stored by status: {info['stored']} (unmatched: the token's job id "
            "does not exist; pending or received: not yet processed by an inbox pass when "
            "the run ended, as a web process leaves them for the workers)"
        )
        if info["other_cpu_pct"] > 20:
            note(
                f"  NOTE: other processes used {info['other_cpu_pct']:.0f}% of a core on average "
                "during the runs: the figures are noisier than on an idle machine"
            )
        if variants:
            note(
                "measured configuration variants of the service at 128 conns (all running, "
                "loaded in turn):"
            )
            var = measure_variants(workdir, 128, seconds, rounds)
            base = var["as deployed"]
            full = var["synchronous=FULL"].rps / base.rps if base.rps else 0.0
            rows.append(
                Row(
                    "1 callback ack",
                    "synchronous=FULL rps @128",
                    fmt(var["synchronous=FULL"].rps),
                    fmt(base.rps) + " (NORMAL)",
                    f"{full:.2f}",
                    ">= 0.80 x NORMAL",
                    yes_no(full >= 0.8),
                )
            )
            for name, r in var.items():
                note(
                    f"  => {name:<24} {r.rps:7.0f} rps  p50 {r.p50_ms:6.2f} ms  p99 "
                    f"{r.p99_ms:6.2f} ms  ({r.rps / base.rps:.2f} x as deployed, server CPU "
                    f"{r.server_cpu_pct:.0f}%)"
                )
        if profile:
            for line in micro_costs(workdir, 2000):
                note(line)
            for line in timing_breakdown(workdir, 128, 10.0):
                note(line)
            for line in profile_with_py_spy(workdir, 128, 10.0):
                note(line)
        return rows
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 s per point, no variants")
    parser.add_argument("--duration", type=float, default=None, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-variants", action="store_true")
    args = parser.parse_args()
    rows = run(
        args.quick,
        profile=False if args.no_profile else None,
        variants=False if args.no_variants else None,
        duration=args.duration,
        rounds=args.rounds,
    )
    print_table(rows)


if __name__ == "__main__":
    main()
