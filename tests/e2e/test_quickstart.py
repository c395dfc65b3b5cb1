"""A new user's first run: `upscale serve` with no configuration at all, then the CLI."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.harness import Proc, free_port
from tests.factories import make_png

pytestmark = pytest.mark.e2e


@pytest.fixture
def fresh_service(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPSCALE_")}
    env["UPSCALE_POLL_GRACE_S"] = "1"  # only to keep the test short
    proc = Proc(
        [sys.executable, "-m", "orchestrator.cli", "serve", "--port", str(port)],
        env,
        tmp_path / "serve.log",
        f"http://127.0.0.1:{port}/healthz",
    )
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the default data directory is ./data
    try:
        proc.start()
    finally:
        os.chdir(cwd)
    try:
        yield f"http://127.0.0.1:{port}", tmp_path
    finally:
        proc.stop()


@pytest.mark.parametrize("provider", ["upsampler", "fotor", "photio", "artnex", "local"])
def test_submit_wait_out_on_a_fresh_service(fresh_service: tuple[str, Path], provider: str) -> None:
    url, home = fresh_service
    (home / "img.png").write_bytes(make_png(40, 30))
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPSCALE_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "submit",
            "img.png",
            "--provider",
            provider,
            "--scale",
            "2",
            "--wait",
            "--out",
            "big.png",
            "--url",
            url,
        ],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with Image.open(io.BytesIO((home / "big.png").read_bytes())) as img:
        assert img.size == (80, 60)
    assert (home / "data" / "api_token").exists()
    assert (home / "data" / "upscale.db").exists()


def test_submit_many_files_into_a_directory(fresh_service: tuple[str, Path]) -> None:
    url, home = fresh_service
    names = []
    for i in range(3):
        (home / f"in{i}.png").write_bytes(make_png(10 + i, 10))
        names.append(f"in{i}.png")
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPSCALE_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "submit",
            *names,
            "--provider",
            "local",
            "--wait",
            "--out-dir",
            "out",
            "--url",
            url,
        ],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for i in range(3):
        with Image.open(home / "out" / f"in{i}.upscaled.png") as img:
            assert img.size == ((10 + i) * 2, 20)
