"""Benchmark 4: end to end through the standalone sandbox.

``upscale sandbox`` and ``upscale serve`` run as processes on 127.0.0.1 (the
service pointed at the sandbox, as in tests/e2e/harness.py). The sandbox
processes instantly (no ``processing_s``, a 16x16 input). K jobs are submitted
through the API (8 at a time); the run ends when all have settled. Figures:

* jobs/s from the first submit to the last result stored;
* per job, submit -> result stored (history: created -> succeeded);
* callback arrival -> result stored: the delivery's ``received_at`` (the delivery
  named by the cause of the ``fetching`` transition) to ``succeeded``, and the
  ``fetching`` transition to ``succeeded`` (the fetch and store alone).

The provider budgets are lifted (``UPSCALE_UPSAMPLER_*_PER_*=0``), else the default
90 submits a minute would be what is measured; polling keeps the service defaults.

    python -m tests.bench.end_to_end [--quick] [--jobs K]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import re
import shutil
import sqlite3
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from tests.bench.util import (
    HOST,
    PYTHON,
    Row,
    ServerProc,
    clean_env,
    fmt,
    free_port,
    note,
    percentile,
    print_table,
    proc_cpu_s,
)

TOKEN = "bench-e2e-token"
SECRET = "bench-e2e-secret-0123456789"
SETTLED = ("succeeded", "failed", "cancelled", "uncertain")


def _png(size: int = 16) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), (120, 40, 200)).save(out, format="PNG")
    return out.getvalue()


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def start_pair(workdir: Path) -> tuple[ServerProc, ServerProc, str]:
    sport, port = free_port(), free_port()
    sandbox = ServerProc(
        [PYTHON, "-m", "orchestrator.cli", "sandbox", "--port", str(sport)],
        clean_env(
            UPSCALE_DATA_DIR=str(workdir / "sb"),
            UPSCALE_SANDBOX_FAULTS="",
            UPSCALE_LOG_LEVEL="WARNING",
            UPSCALE_API_TOKENS=TOKEN,
            # The service's callback origin: the only loopback address, besides its own,
            # that the sandbox's guarded client reaches (inputs, webhooks).
            UPSCALE_PUBLIC_URL=f"http://{HOST}:{port}",
        ),
        workdir / "sandbox.log",
        sport,
        f"http://{HOST}:{sport}/sandbox/stats",
    ).start()
    sb = f"http://{HOST}:{sport}/sandbox"
    env = clean_env(
        UPSCALE_DATA_DIR=str(workdir / "data"),
        UPSCALE_API_TOKENS=TOKEN,
        UPSCALE_SECRET_KEYS=SECRET,
        UPSCALE_UPSAMPLER_BASE_URL=f"{sb}/upsampler/api/v1",
        UPSCALE_FOTOR_BASE_URL=f"{sb}/fotor",
        UPSCALE_PHOTIO_BASE_URL=f"{sb}/photio",
        UPSCALE_ARTNEX_BASE_URL=f"{sb}/artnex",
        UPSCALE_UPSAMPLER_SUBMITS_PER_MIN="0",
        UPSCALE_UPSAMPLER_SUBMITS_PER_HOUR="0",
        UPSCALE_UPSAMPLER_SUBMITS_PER_DAY="0",
        UPSCALE_UPSAMPLER_STATUS_PER_MIN="0",
        UPSCALE_LOG_LEVEL="INFO",
    )
    try:
        service = ServerProc(
            [PYTHON, "-m", "orchestrator.cli", "serve", "--port", str(port)],
            env,
            workdir / "service.log",
            port,
            f"http://{HOST}:{port}/healthz",
        ).start()
    except BaseException:
        sandbox.stop()
        raise
    return sandbox, service, f"http://{HOST}:{port}"


async def _submit_all(base: str, k: int, parallel: int) -> list[dict[str, Any]]:
    image = _png()
    sem = asyncio.Semaphore(parallel)
    async with httpx.AsyncClient(
        base_url=base, timeout=60, trust_env=False, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:

        async def one(i: int) -> dict[str, Any]:
            async with sem:
                response = await client.post(
                    "/v1/jobs",
                    data={"provider": "upsampler", "scale": "2"},
                    files={"image": (f"in{i}.png", image, "image/png")},
                )
                if response.status_code != 202:
                    raise RuntimeError(f"submit answered {response.status_code}: {response.text}")
                job: dict[str, Any] = response.json()
                return job

        return await asyncio.gather(*(one(i) for i in range(k)))


def _states(db: Path) -> dict[str, int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = con.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
    finally:
        con.close()
    return {str(s): int(n) for s, n in rows}


async def _details(base: str, ids: list[str]) -> list[dict[str, Any]]:
    sem = asyncio.Semaphore(8)
    async with httpx.AsyncClient(
        base_url=base, timeout=60, trust_env=False, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:

        async def one(job_id: str) -> dict[str, Any]:
            async with sem:
                r = await client.get(f"/v1/jobs/{job_id}/history")
                r.raise_for_status()
                history = r.json()["history"]
                out: dict[str, Any] = {"id": job_id}
                for h in history:
                    if h["from"] is None:
                        out["created"] = _ts(h["at"])
                    if h["to"] == "fetching" and "fetching" not in out:
                        out["fetching"] = _ts(h["at"])
                        out["via"] = h["cause"]
                    if h["to"] == "succeeded":
                        out["succeeded"] = _ts(h["at"])
                    if h["to"] == "submitted" and "submitted" not in out:
                        out["submitted"] = _ts(h["at"])
                cause = str(out.get("via", ""))
                if cause.startswith("callback:"):
                    d = await client.get(f"/v1/deliveries/{cause.split(':', 1)[1]}")
                    if d.status_code == 200:
                        out["received"] = _ts(d.json()["received_at"])
                return out

        return await asyncio.gather(*(one(i) for i in ids))


_FETCHED = re.compile(r"stored result \S+ from \S+ \(.*\) in ([0-9.]+)s")
_CALL = re.compile(r"provider\.call .*action=(\w+) .*duration_ms=([0-9.]+)")


def _from_log(path: Path) -> dict[str, list[float]]:
    """Durations the service logs itself: each fetch, each provider call (seconds)."""
    out: dict[str, list[float]] = {"fetch": [], "submit": [], "poll": []}
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        if (m := _FETCHED.search(line)) is not None:
            out["fetch"].append(float(m.group(1)))
        elif (c := _CALL.search(line)) is not None and c.group(1) in out:
            out[c.group(1)].append(float(c.group(2)) / 1000)
    return out


def run(quick: bool = False, *, jobs: int | None = None) -> list[Row]:
    k = jobs or (30 if quick else 200)
    timeout_s = 60.0 if quick else 240.0
    note(f"[4/4] end to end ({k} jobs through the standalone sandbox, instant processing)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    sandbox: ServerProc | None = None
    service: ServerProc | None = None
    try:
        sandbox, service, base = start_pair(workdir)
        db = workdir / "data" / "upscale.db"
        # one job first, to warm both processes up (imports, connections)
        asyncio.run(_submit_all(base, 1, 1))
        deadline = time.monotonic() + 30
        while _states(db).get("succeeded", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        cpu_svc0, cpu_sb0 = proc_cpu_s(service.pid), proc_cpu_s(sandbox.pid)
        t0 = time.time()
        submitted = asyncio.run(_submit_all(base, k, 8))
        t_submitted = time.time()
        ids = [j["id"] for j in submitted]
        deadline = time.monotonic() + timeout_s
        states: dict[str, int] = {}
        while time.monotonic() < deadline:
            states = _states(db)
            if sum(states.get(s, 0) for s in SETTLED) >= k + 1:
                break
            time.sleep(0.05)
        t_end = time.time()
        cpu_svc = proc_cpu_s(service.pid) - cpu_svc0
        cpu_sb = proc_cpu_s(sandbox.pid) - cpu_sb0
        details = asyncio.run(_details(base, ids))
        logged = _from_log(workdir / "service.log")
    finally:
        if service is not None:
            service.stop()
        if sandbox is not None:
            sandbox.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    done = [d for d in details if "succeeded" in d]
    last = max((d["succeeded"] for d in done), default=t_end)
    span = last - t0
    jps = len(done) / span if span > 0 else 0.0
    total = [d["succeeded"] - d["created"] for d in done if "created" in d]
    arrival = [d["succeeded"] - d["received"] for d in done if "received" in d]
    fetching = [d["succeeded"] - d["fetching"] for d in done if "fetching" in d]
    queue = [d["received"] - d["created"] for d in done if "received" in d]
    via_poll = sum(1 for d in done if not str(d.get("via", "")).startswith("callback:"))
    note(
        f"  {len(done)}/{k} succeeded in {span:.2f} s (submits took {t_submitted - t0:.2f} s); "
        f"states {states}; {via_poll} resolved by polling; CPU during the run: service "
        f"{cpu_svc:.1f} s ({100 * cpu_svc / max(span, 1e-9):.0f}% of a core), sandbox "
        f"{cpu_sb:.1f} s"
    )
    note(
        f"  submit -> callback received p50 {percentile(queue, 50) * 1000:.0f} ms, "
        f"p99 {percentile(queue, 99) * 1000:.0f} ms"
    )
    accepted = [d["submitted"] - t0 for d in done if "submitted" in d]
    stored = [d["succeeded"] - t0 for d in done]
    if accepted and stored:
        note(
            f"  timeline from the first submit: submits accepted by the provider from "
            f"{min(accepted):.2f} s to {max(accepted):.2f} s; results stored from "
            f"{min(stored):.2f} s to {max(stored):.2f} s "
            f"({sum(1 for x in stored if x < max(accepted))} of {len(stored)} before the last "
            "submit was accepted)"
        )
    fetch_s, submit_s = logged["fetch"][1:], logged["submit"][1:]  # without the warm-up job
    note(
        f"  from the service log: the fetch itself p50 {percentile(fetch_s, 50) * 1000:.0f} ms "
        f"p99 {percentile(fetch_s, 99) * 1000:.0f} ms (10 ms resolution, n={len(fetch_s)}); "
        f"the submit call p50 {percentile(submit_s, 50) * 1000:.0f} ms p99 "
        f"{percentile(submit_s, 99) * 1000:.0f} ms (n={len(submit_s)}); the rest of "
        "fetching -> stored is waiting to be leased and for one of the worker slots"
    )

    def ms(values: list[float], p: float) -> float:
        return percentile(values, p) * 1000

    return [
        Row(
            "4 end to end",
            f"jobs/s ({len(done)}/{k} succeeded)",
            f"{jps:.1f}",
            "-",
            "-",
            "report",
            "-" if len(done) == k else "NO (not all succeeded)",
        ),
        Row(
            "4 end to end",
            "submit -> stored p50 / p99 ms",
            f"{fmt(ms(total, 50))} / {fmt(ms(total, 99))}",
            "-",
            "-",
            "report",
            "-",
        ),
        Row(
            "4 end to end",
            "callback -> stored p50 / p99 ms",
            f"{fmt(ms(arrival, 50))} / {fmt(ms(arrival, 99))}",
            "-",
            "-",
            "report",
            "-",
        ),
        Row(
            "4 end to end",
            "fetching -> stored p50 / p99 ms",
            f"{fmt(ms(fetching, 50))} / {fmt(ms(fetching, 99))}",
            "-",
            "-",
            "report",
            "-",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--jobs", type=int, default=None)
    args = parser.parse_args()
    print_table(run(args.quick, jobs=args.jobs))


if __name__ == "__main__":
    main()
