"""Benchmark 2: fetch memory and throughput.

A ~200 MB PNG of noise (RGBA, stored zlib blocks, so it is really that large on
the wire and on disk) is generated once into the cache dir and served by a plain
static file server (``python -m http.server``) on 127.0.0.1. Each download runs
in its own fresh subprocess, which reads its RSS, resets its peak (``clear_refs``)
and reports the peak RSS growth (``VmHWM``) and the time taken:

* ``fetcher``: ``ResultFetcher`` with ``make_guarded_client`` and an AllowList for
  127.0.0.1 (download, byte cap, sha256, fsync, PNG check, atomic move);
* ``plain``: an ``httpx`` streaming download into a file (the baseline);
* ``plain+sha+fsync``: the baseline plus hashing and fsync (shows what the
  fetcher's extra guarantees cost, not part of the target).

    python -m tests.bench.fetch [--quick] [--size-mb 200]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from tests.bench.util import (
    CACHE_DIR,
    HOST,
    PYTHON,
    Row,
    ServerProc,
    clean_env,
    fmt,
    free_port,
    note,
    print_table,
    proc_status_kb,
    reset_peak_rss,
    yes_no,
)

TARGET_GROWTH_MB = 64
TARGET_RATIO = 0.80
_WIDTH = 8192  # RGBA pixels per row: 32 KiB of noise per row


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def make_noise_png(path: Path, size_mb: int) -> Path:
    """A PNG of about ``size_mb`` MiB of RGBA noise (stored, not compressed), in strips."""
    height = max(1, size_mb * (1 << 20) // (_WIDTH * 4))
    rng = random.Random(size_mb)
    tmp = path.with_suffix(".part")
    comp = zlib.compressobj(level=0)
    with tmp.open("wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n")
        out.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", _WIDTH, height, 8, 6, 0, 0, 0)))
        strip = 64
        for top in range(0, height, strip):
            rows = min(strip, height - top)
            raw = bytearray()
            for _ in range(rows):
                raw += b"\x00"
                raw += rng.randbytes(_WIDTH * 4)
            data = comp.compress(bytes(raw))
            if data:
                out.write(_chunk(b"IDAT", data))
        out.write(_chunk(b"IDAT", comp.flush()))
        out.write(_chunk(b"IEND", b""))
    tmp.replace(path)
    return path


def noise_png(size_mb: int) -> Path:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"noise-{size_mb}mb.png"
    if not path.exists():
        started = time.perf_counter()
        make_noise_png(path, size_mb)
        note(
            f"  generated {path} ({path.stat().st_size / 1e6:.0f} MB) in "
            f"{time.perf_counter() - started:.1f} s"
        )
    small = CACHE_DIR / "tiny.png"
    if not small.exists():
        make_noise_png(small, 0)  # one row: a warm-up download through the same code
    return path


# -- the measuring subprocess -------------------------------------------------------------


_PHASES: dict[str, float] = {}


def _time_phases() -> None:
    """Wrap the fetcher's blocking steps with timers (this subprocess only): where the
    time of one fetch goes. Used by the "fetcher-timed" run, not the measured ones."""
    from orchestrator.fetch import fetcher, spool
    from orchestrator.results.storage import LocalResultStorage

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                _PHASES[name] = _PHASES.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    spool.ResultSpool._write = timed("sha256+write (spool thread)", spool.ResultSpool._write)  # type: ignore[method-assign]
    spool.ResultSpool._close = timed("final fsync", spool.ResultSpool._close)  # type: ignore[method-assign]
    fetcher.inspect_image = timed("image header check", fetcher.inspect_image)  # type: ignore[attr-defined]
    LocalResultStorage._put_file = timed("move into place", LocalResultStorage._put_file)  # type: ignore[method-assign]


async def _fetcher_download(url: str, out: Path, warm_url: str) -> dict[str, Any]:
    import httpx

    from orchestrator.fetch.allowlist import AllowList
    from orchestrator.fetch.fetcher import ResultFetcher
    from orchestrator.fetch.transport import make_guarded_client
    from orchestrator.results.storage import LocalResultStorage

    client = make_guarded_client(
        AllowList.parse("127.0.0.1"), timeout=httpx.Timeout(60.0, connect=10.0)
    )
    storage = LocalResultStorage(out / "results")
    fetcher = ResultFetcher(
        client, storage, storage.tmp_dir, max_bytes=512 * 1024 * 1024, max_pixels=178_000_000
    )
    await fetcher.fetch(warm_url, "warm")
    _PHASES.clear()
    rss0 = proc_status_kb()["VmRSS"]
    reset = reset_peak_rss()
    hwm0 = proc_status_kb()["VmHWM"]
    started = time.perf_counter()
    info = await fetcher.fetch(url, "bench")
    seconds = time.perf_counter() - started
    hwm1 = proc_status_kb()["VmHWM"]
    await client.aclose()
    return {
        "bytes": info.bytes,
        "seconds": seconds,
        "rss0_kb": rss0,
        "hwm0_kb": hwm0,
        "hwm1_kb": hwm1,
        "reset": reset,
        "phases": {k: round(v, 3) for k, v in _PHASES.items()},
    }


async def _plain_download(url: str, out: Path, warm_url: str, extra: bool) -> dict[str, Any]:
    import httpx

    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0), trust_env=False) as client:

        async def get(target: str, path: Path) -> int:
            size = 0
            sha = hashlib.sha256() if extra else None
            async with client.stream("GET", target) as response:
                response.raise_for_status()
                with path.open("wb") as fh:
                    async for chunk in response.aiter_bytes():
                        if sha is not None:
                            sha.update(chunk)
                        fh.write(chunk)
                        size += len(chunk)
                    if extra:
                        fh.flush()
                        os.fsync(fh.fileno())
            return size

        await get(warm_url, out / "warm.png")
        rss0 = proc_status_kb()["VmRSS"]
        reset = reset_peak_rss()
        hwm0 = proc_status_kb()["VmHWM"]
        started = time.perf_counter()
        size = await get(url, out / "plain.png")
        seconds = time.perf_counter() - started
        hwm1 = proc_status_kb()["VmHWM"]
    return {
        "bytes": size,
        "seconds": seconds,
        "rss0_kb": rss0,
        "hwm0_kb": hwm0,
        "hwm1_kb": hwm1,
        "reset": reset,
    }


def worker_main(kind: str, url: str, warm_url: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if kind == "fetcher-timed":
        _time_phases()
    if kind.startswith("fetcher"):
        result = asyncio.run(_fetcher_download(url, out, warm_url))
    else:
        result = asyncio.run(_plain_download(url, out, warm_url, extra=kind == "plain+sha+fsync"))
    print("BENCHJSON " + json.dumps(result), flush=True)


def run_worker(kind: str, url: str, warm_url: str, out: Path) -> dict[str, Any]:
    args = [
        PYTHON,
        "-m",
        "tests.bench.fetch",
        "--worker",
        kind,
        "--url",
        url,
        "--warm-url",
        warm_url,
        "--out",
        str(out),
    ]
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=300, check=False, env=clean_env()
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)
    for line in done.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            data: dict[str, Any] = json.loads(line.removeprefix("BENCHJSON "))
            base = data["rss0_kb"] if data["reset"] else max(data["rss0_kb"], data["hwm0_kb"])
            data["growth_mb"] = (data["hwm1_kb"] - base) / 1024
            data["mb_s"] = data["bytes"] / 1e6 / data["seconds"]
            return data
    raise RuntimeError(f"{kind} download failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


# -- the benchmark -----------------------------------------------------------------------


def run(quick: bool = False, *, size_mb: int = 200, reps: int | None = None) -> list[Row]:
    reps = reps or (1 if quick else 5)
    note(f"[2/4] fetch memory ({size_mb} MB PNG, {reps} run(s) each)")
    image = noise_png(size_mb)
    workdir = Path(tempfile.mkdtemp(prefix="bench-fetch-"))
    port = free_port()
    server = ServerProc(
        [PYTHON, "-m", "http.server", str(port), "--bind", HOST, "--directory", str(CACHE_DIR)],
        clean_env(),
        workdir / "http.log",
        port,
    )
    results: dict[str, list[dict[str, Any]]] = {"fetcher": [], "plain": [], "plain+sha+fsync": []}
    try:
        with server.start():
            url = f"http://{HOST}:{port}/{image.name}"
            warm = f"http://{HOST}:{port}/tiny.png"
            kinds = ["plain", "fetcher"] if quick else ["plain", "fetcher", "plain+sha+fsync"]
            for i in range(reps):
                for kind in kinds:
                    r = run_worker(kind, url, warm, workdir / f"{kind}-{i}")
                    results[kind].append(r)
                    note(
                        f"  {kind:<16} {r['mb_s']:7.0f} MB/s  {r['seconds']:.2f} s  "
                        f"peak RSS growth {r['growth_mb']:.1f} MB"
                    )
            timed = None if quick else run_worker("fetcher-timed", url, warm, workdir / "timed")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def best(kind: str) -> float:
        return float(sorted(r["mb_s"] for r in results[kind])[len(results[kind]) // 2])

    fetch_growth = max(r["growth_mb"] for r in results["fetcher"])
    plain_growth = max(r["growth_mb"] for r in results["plain"])
    fetch_tp, plain_tp = best("fetcher"), best("plain")
    ratio = fetch_tp / plain_tp if plain_tp else 0.0
    rows = [
        Row(
            "2 fetch",
            f"peak RSS growth, {size_mb} MB",
            f"{fetch_growth:.1f} MB",
            f"{plain_growth:.1f} MB (plain)",
            "-",
            f"< {TARGET_GROWTH_MB} MB",
            yes_no(fetch_growth < TARGET_GROWTH_MB),
        ),
        Row(
            "2 fetch",
            "throughput MB/s (median)",
            fmt(fetch_tp),
            fmt(plain_tp) + " (plain)",
            f"{ratio:.2f}",
            f">= {TARGET_RATIO:.2f} x plain",
            yes_no(ratio >= TARGET_RATIO),
        ),
    ]
    if results["plain+sha+fsync"]:
        extra = best("plain+sha+fsync")
        rows.append(
            Row(
                "2 fetch",
                "plain + sha256 + fsync MB/s",
                fmt(extra),
                fmt(plain_tp) + " (plain)",
                f"{extra / plain_tp:.2f}",
                "report",
                "-",
            )
        )
    if timed is not None:
        phases = ", ".join(f"{k} {v:.2f} s" for k, v in timed["phases"].items())
        plain_s = sorted(r["seconds"] for r in results["plain"])[len(results["plain"]) // 2]
        note(
            f"  fetcher time breakdown (one extra run with timers): total "
            f"{timed['seconds']:.2f} s; in other threads, overlapping the download: {phases}; "
            f"plain download {plain_s:.2f} s. Blocks are hashed, written and (PNG) walked "
            "chunk by chunk in the spool's thread while the next ones are received; the "
            "image header check runs beside the final fsync."
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--warm-url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker, args.url, args.warm_url, Path(args.out))
        return
    print_table(run(args.quick, size_mb=args.size_mb, reps=args.reps))


if __name__ == "__main__":
    main()
