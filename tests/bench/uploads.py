"""Benchmark 5: memory of concurrent uploads.

The real service (``upscale serve --web-only``: it receives, the loops do not
run, so nothing but the uploads moves its memory) runs as a process on
127.0.0.1. After a few small warm-up uploads its RSS is the baseline; then N
clients upload a 25 MB image at once, as multipart and as base64 JSON, and the
service's peak RSS (``VmHWM``, reset before each round) gives the growth per
concurrent upload. Target: under 8 MB each (the image is written to disk as it
arrives; before, it was about 70 MB each).

    python -m tests.bench.uploads [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import tempfile
import time
from pathlib import Path

import httpx

from tests.bench.util import (
    HOST,
    PYTHON,
    Row,
    ServerProc,
    clean_env,
    free_port,
    note,
    print_table,
    proc_status_kb,
    reset_peak_rss,
    yes_no,
)
from tests.factories import make_png

TARGET_MB_PER_UPLOAD = 8.0
IMAGE_BYTES = 25_000_000
TOKEN = "bench-token"


def _image() -> bytes:
    head = make_png()
    return head + os.urandom(IMAGE_BYTES - len(head))


async def _round(base: str, kind: str, image: bytes, encoded: bytes, clients: int) -> float:
    """``clients`` uploads at once; the seconds the slowest took."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(
        base_url=base, headers=headers, timeout=300.0, trust_env=False
    ) as client:

        async def one(i: int) -> None:
            if kind == "multipart":
                response = await client.post(
                    "/v1/jobs",
                    data={"provider": "local", "metadata": f'{{"i": {i}}}'},
                    files={"image": ("in.png", image, "image/png")},
                )
            else:
                response = await client.post(
                    "/v1/jobs",
                    content=b'{"provider": "local", "metadata": {"i": %d}, "image": "' % i
                    + encoded
                    + b'"}',
                    headers={"Content-Type": "application/json"},
                )
            if response.status_code not in (200, 202):
                raise RuntimeError(f"{kind} upload: {response.status_code} {response.text}")

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(clients)))
        return time.perf_counter() - started


def run(quick: bool = False) -> list[Row]:
    clients = 4 if quick else 8
    reps = 1 if quick else 2
    note(f"[5/5] upload memory ({clients} concurrent 25 MB uploads, {reps} round(s) each)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-uploads-"))
    port = free_port()
    env = clean_env(
        UPSCALE_DATA_DIR=str(workdir / "data"),
        UPSCALE_API_TOKENS=TOKEN,
        UPSCALE_SECRET_KEYS="bench-secret-key",
        UPSCALE_MAX_CONCURRENT_UPLOADS=str(clients),
        UPSCALE_LOG_LEVEL="WARNING",
    )
    server = ServerProc(
        [PYTHON, "-m", "orchestrator.cli", "serve", "--web-only", "--port", str(port)],
        env,
        workdir / "service.log",
        port,
        f"http://{HOST}:{port}/healthz",
    )
    image = _image()
    encoded = base64.b64encode(image)
    base = f"http://{HOST}:{port}"
    growth: dict[str, float] = {}
    try:
        with server.start(timeout_s=60):
            small = make_png()
            for _ in range(3):
                asyncio.run(_round(base, "multipart", small, base64.b64encode(small), 2))
            idle_mb = proc_status_kb(server.pid)["VmRSS"] / 1024
            note(f"  service RSS at rest {idle_mb:.0f} MB")
            for kind in ("multipart", "json"):
                worst = 0.0
                for _ in range(reps):
                    before = proc_status_kb(server.pid)["VmRSS"]
                    reset = reset_peak_rss(server.pid)
                    seconds = asyncio.run(_round(base, kind, image, encoded, clients))
                    status = proc_status_kb(server.pid)
                    start = before if reset else max(before, status["VmHWM"])
                    per_upload = (status["VmHWM"] - start) / 1024 / clients
                    worst = max(worst, per_upload)
                    note(
                        f"  {kind:<9} {clients} x 25 MB in {seconds:.1f} s, peak RSS "
                        f"{status['VmHWM'] / 1024:.0f} MB: +{per_upload:.1f} MB per upload"
                    )
                growth[kind] = worst
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return [
        Row(
            "5 uploads",
            f"peak RSS growth per upload, {clients} x 25 MB {kind}",
            f"{growth[kind]:.1f} MB",
            f"{idle_mb:.0f} MB at rest",
            f"{growth[kind] / 25:.2f} of the upload",
            f"< {TARGET_MB_PER_UPLOAD:.0f} MB",
            yes_no(growth[kind] < TARGET_MB_PER_UPLOAD),
        )
        for kind in ("multipart", "json")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print_table(run(args.quick))


if __name__ == "__main__":
    main()
