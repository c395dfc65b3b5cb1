"""Run the service and the standalone sandbox as real processes on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

TOKEN = "e2e-token"
SECRET = "e2e-secret-key-0123456789"
SETTLED = {"succeeded", "failed", "cancelled", "uncertain"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _upscale_cmd() -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli"]


@dataclass
class Proc:
    args: list[str]
    env: dict[str, str]
    log_path: Path
    health_url: str
    popen: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20.0) -> None:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"process exited early:\n{self.log()}")
            try:
                if httpx.get(self.health_url, timeout=1.0, trust_env=False).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"process did not become healthy:\n{self.log()}")

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self.popen = None

    def kill(self) -> None:
        assert self.popen is not None
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(5)
        self.popen = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""


@dataclass
class Sandbox:
    port: int
    proc: Proc
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        # The control routes (faults, stats) may require the service's API token: send it always.
        self.client = httpx.Client(
            base_url=self.base,
            timeout=10.0,
            trust_env=False,
            headers={"Authorization": f"Bearer {TOKEN}"},
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/sandbox"

    def faults(self, **values: Any) -> None:
        self.client.delete("/faults").raise_for_status()
        if values:
            self.client.put("/faults", json=values).raise_for_status()

    def stats(self, provider: str = "upsampler") -> dict[str, Any]:
        response = self.client.get("/stats")
        response.raise_for_status()
        data: dict[str, Any] = response.json().get(provider, {})
        return data

    def close(self) -> None:
        self.client.close()
        self.proc.stop()


@dataclass
class Service:
    port: int
    data_dir: Path
    proc: Proc
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(
            base_url=self.base,
            timeout=30.0,
            trust_env=False,
            headers={"Authorization": f"Bearer {TOKEN}"},
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def submit(
        self, image: bytes, *, scale: float = 2, provider: str = "upsampler", **extra: Any
    ) -> dict[str, Any]:
        response = self.client.post(
            "/v1/jobs",
            data={"provider": provider, "scale": str(scale), **extra},
            files={"image": ("in.png", image, "image/png")},
        )
        assert response.status_code == 202, response.text
        job: dict[str, Any] = response.json()
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/jobs/{job_id}")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def history(self, job_id: str) -> list[dict[str, Any]]:
        response = self.client.get(f"/v1/jobs/{job_id}/history")
        response.raise_for_status()
        data: list[dict[str, Any]] = response.json()["history"]
        return data

    def wait(
        self,
        job_ids: list[str],
        *,
        timeout_s: float = 30.0,
        done: Callable[[dict[str, Any]], bool] = lambda j: j["state"] in SETTLED,
    ) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        jobs: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            jobs = {i: self.job(i) for i in job_ids}
            if all(done(j) for j in jobs.values()):
                return jobs
            time.sleep(0.1)
        states = {i: j["state"] for i, j in jobs.items()}
        raise AssertionError(f"jobs not settled in {timeout_s}s: {states}\n{self.proc.log()}")

    def result_files(self) -> list[Path]:
        root = self.data_dir / "results"
        return sorted(p for p in root.glob("*") if p.is_file()) if root.exists() else []

    def close(self) -> None:
        self.client.close()
        self.proc.stop()


def start_sandbox(tmp: Path, faults: str = "") -> Sandbox:
    port = free_port()
    env = {
        **os.environ,
        "UPSCALE_SANDBOX_FAULTS": faults,
        "UPSCALE_DATA_DIR": str(tmp / "sb"),
        "UPSCALE_API_TOKENS": TOKEN,
    }
    proc = Proc(
        [*_upscale_cmd(), "sandbox", "--port", str(port)],
        env,
        tmp / f"sandbox-{port}.log",
        f"http://127.0.0.1:{port}/sandbox/stats",
    )
    proc.start()
    return Sandbox(port, proc)


def service_env(data_dir: Path, sandbox: Sandbox, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPSCALE_")}
    env.update(
        {
            "UPSCALE_DATA_DIR": str(data_dir),
            "UPSCALE_API_TOKENS": TOKEN,
            "UPSCALE_SECRET_KEYS": SECRET,
            "UPSCALE_UPSAMPLER_BASE_URL": f"{sandbox.base}/upsampler/api/v1",
            "UPSCALE_FOTOR_BASE_URL": f"{sandbox.base}/fotor",
            "UPSCALE_PHOTIO_BASE_URL": f"{sandbox.base}/photio",
            "UPSCALE_ARTNEX_BASE_URL": f"{sandbox.base}/artnex",
            "UPSCALE_POLL_GRACE_S": "1",
            "UPSCALE_POLL_BASE_S": "0.3",
            "UPSCALE_POLL_CAP_S": "1",
            "UPSCALE_SUBMIT_TIMEOUT_S": "5",
            "UPSCALE_LOG_LEVEL": "INFO",
        }
    )
    env.update(overrides)
    return env


def start_service(
    tmp: Path,
    sandbox: Sandbox,
    *,
    port: int | None = None,
    data_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Service:
    port = port or free_port()
    data_dir = data_dir or tmp / "data"
    full_env = service_env(data_dir, sandbox, **dict(env or {}))
    proc = Proc(
        [*_upscale_cmd(), "serve", "--port", str(port)],
        full_env,
        tmp / f"service-{port}.log",
        f"http://127.0.0.1:{port}/healthz",
    )
    proc.start()
    return Service(port, data_dir, proc)
