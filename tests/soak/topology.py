"""The service as real processes: one ``serve`` on SQLite, or web and worker processes
on PostgreSQL. Each can be SIGKILLed at any moment and started again."""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.common.clock import SystemClock
from orchestrator.common.settings import Secret
from orchestrator.security.signing import CallbackSigner
from tests.e2e.harness import SECRET, Proc, Sandbox, free_port, service_env
from tests.soak.procs import children_of

CLI = [sys.executable, "-m", "orchestrator.cli"]
# Outbound webhooks retried often enough to ride out a subscriber outage within the run.
RETRY_SCHEDULE = ",".join(["1", "2", "3", "5", "8"] + ["10"] * 60)


@dataclass(frozen=True)
class Kill:
    at: float  # wall clock, seconds since the epoch (compared with job history times)
    role: str  # serve, web or worker
    label: str


def service_settings(
    public: str, database_url: str, results_url: str, deadline_s: int
) -> dict[str, str]:
    env = {
        "UPSCALE_PUBLIC_URL": public,
        "UPSCALE_DATABASE_URL": database_url,
        "UPSCALE_RESULTS_URL": results_url,
        "UPSCALE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
        "UPSCALE_WEBHOOK_RETRY_SCHEDULE_S": RETRY_SCHEDULE,
        "UPSCALE_WEBHOOK_DISABLE_AFTER": "1000000",
        "UPSCALE_WEBHOOK_TIMEOUT_S": "5",
        "UPSCALE_SYNC_TIMEOUT_S": "5",
        "UPSCALE_SUBMIT_TIMEOUT_S": "5",
        "UPSCALE_JOB_DEADLINE_S": str(deadline_s),
        "UPSCALE_STUCK_AFTER_S": "20",
        "UPSCALE_LEASE_S": "8",
        "UPSCALE_LOCAL_ENGINE": "lanczos",
        "UPSCALE_LOCAL_WORKERS": "1",
        "UPSCALE_LOG_LEVEL": "WARNING",
    }
    for provider in ("UPSAMPLER", "FOTOR", "PHOTIO", "ARTNEX"):
        env[f"UPSCALE_{provider}_SUBMITS_PER_MIN"] = "300"
        env[f"UPSCALE_{provider}_SUBMITS_PER_HOUR"] = "0"
        env[f"UPSCALE_{provider}_SUBMITS_PER_DAY"] = "0"
        env[f"UPSCALE_{provider}_STATUS_PER_MIN"] = "600"
    return env


def fotor_webhook_url(public: str) -> str:
    token = CallbackSigner([Secret(SECRET)], SystemClock()).for_account("fotor")
    return f"{public}/callbacks/fotor/{token}"


@dataclass
class Member:
    role: str
    label: str
    proc: Proc


class Topology:
    """A set of service processes; ``bases`` are the web processes the soak talks to."""

    def __init__(self, name: str, tmp: Path, members: list[Member], public: str, webs: list[str]):
        self.name = name
        self.tmp = tmp
        self.members = members
        self.public = public
        self.webs = webs
        self.kills: list[Kill] = []
        self._lock = threading.Lock()
        self._down: set[str] = set()

    def start(self) -> None:
        for member in self.members:
            member.proc.start(timeout_s=90)

    def bases(self) -> list[str]:
        with self._lock:
            up = [b for b in self.webs if b not in self._down]
        return up or self.webs

    def processes(self) -> list[tuple[str, int]]:
        """(label, pid) of every live service process, not their children."""
        out = []
        for member in self.members:
            popen = member.proc.popen
            if popen is not None and popen.poll() is None:
                out.append((member.label, popen.pid))
        return out

    def process_tree(self) -> list[int]:
        pids = [pid for _, pid in self.processes()]
        return pids + [c for pid in pids for c in children_of(pid)]

    def kill_one(self, rng: random.Random, roles: tuple[str, ...]) -> Kill:
        """SIGKILL one member, then start it again (after a moment, as a supervisor would)."""
        member = rng.choice([m for m in self.members if m.role in roles])
        base = self._web_base(member)
        if base:
            with self._lock:
                self._down.add(base)
        member.proc.kill()
        kill = Kill(time.time(), member.role, member.label)
        self.kills.append(kill)
        time.sleep(rng.uniform(0.5, 2.0))
        member.proc.start(timeout_s=90)
        if base:
            with self._lock:
                self._down.discard(base)
        return kill

    def _web_base(self, member: Member) -> str | None:
        if member.role == "worker":
            return None
        port = member.proc.health_url.split(":")[2].split("/")[0]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        for member in self.members:
            with contextlib.suppress(Exception):
                member.proc.stop()


def sqlite_topology(
    tmp: Path, sandbox: Sandbox, results_url: str, deadline_s: int
) -> tuple[Topology, Path]:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    db = tmp / "data" / "upscale.db"
    env = service_env(
        tmp / "data",
        sandbox,
        **service_settings(public, f"sqlite:///{db}", results_url, deadline_s),
    )
    proc = Proc([*CLI, "serve", "--port", str(port)], env, tmp / "serve.log", f"{public}/healthz")
    return Topology("sqlite", tmp, [Member("serve", "serve", proc)], public, [public]), db


def postgres_topology(
    tmp: Path,
    sandbox: Sandbox,
    dsn: str,
    results_url: str,
    deadline_s: int,
    webs: int = 2,
    workers: int = 2,
) -> Topology:
    ports = [free_port() for _ in range(webs)]
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    public = bases[0]
    env = service_env(
        tmp / "data", sandbox, **service_settings(public, dsn, results_url, deadline_s)
    )
    migrate = subprocess.run(
        [*CLI, "db", "migrate"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if migrate.returncode != 0:
        raise RuntimeError(f"db migrate failed: {migrate.stderr}")
    members = [
        Member(
            "web",
            f"web-{n}",
            Proc(
                [*CLI, "serve", "--port", str(port), "--web-only"],
                env,
                tmp / f"web-{n}.log",
                f"http://127.0.0.1:{port}/healthz",
            ),
        )
        for n, port in enumerate(ports)
    ]
    members += [
        Member(
            "worker",
            f"worker-{n}",
            Proc([*CLI, "worker"], env, tmp / f"worker-{n}.log", f"{public}/healthz"),
        )
        for n in range(workers)
    ]
    return Topology("postgres", tmp, members, public, bases)
