"""Shared helpers for the benchmarks: ports, server subprocesses, percentiles, /proc readings
and the result table.

Everything here talks to 127.0.0.1 only, and every process started through
:class:`ServerProc` is stopped by its owner (and, as a last resort, at exit).
"""

from __future__ import annotations

import atexit
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
HOST = "127.0.0.1"
CACHE_DIR = Path(os.environ.get("UPSCALE_BENCH_CACHE", "/tmp/upscale-bench-cache"))

_LIVE: set[ServerProc] = set()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def clean_env(**overrides: str) -> dict[str, str]:
    """The current environment without any UPSCALE_* setting, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPSCALE_")}
    env.update(overrides)
    return env


def port_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass(eq=False)
class ServerProc:
    """A server started as a subprocess; ready when ``health_url`` answers (< 500) or,
    without one, when its port accepts connections."""

    args: list[str]
    env: Mapping[str, str]
    log_path: Path
    port: int
    health_url: str | None = None
    # A second process (a worker beside a web process), started once this one is
    # ready, with the same environment; paused, resumed and stopped with it.
    beside: list[str] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)
    companion: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self, timeout_s: float = 30.0) -> ServerProc:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.args, env=dict(self.env), stdout=log, stderr=subprocess.STDOUT, cwd=REPO
            )
        _LIVE.add(self)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.args} exited early:\n{self.log()}")
            if self._ready():
                if self.beside is not None:
                    with self.log_path.open("ab") as log:
                        self.companion = subprocess.Popen(
                            self.beside,
                            env=dict(self.env),
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            cwd=REPO,
                        )
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.args} did not become ready:\n{self.log()}")

    def _ready(self) -> bool:
        if self.health_url is None:
            return port_open(self.port)
        try:
            return httpx.get(self.health_url, timeout=1.0, trust_env=False).status_code < 500
        except httpx.HTTPError:
            return False

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def _signal(self, sig: signal.Signals) -> None:
        for proc in (self.popen, self.companion):
            if proc is not None and proc.poll() is None:
                proc.send_signal(sig)

    def pause(self) -> None:
        """Stop the process where it is (SIGSTOP): it takes no core until ``resume``."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def stop(self, timeout_s: float = 15.0) -> None:
        self.resume()
        for proc in (self.companion, self.popen):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.popen = self.companion = None
        _LIVE.discard(self)

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def __enter__(self) -> ServerProc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@atexit.register
def _stop_leftovers() -> None:
    for proc in list(_LIVE):
        proc.stop(timeout_s=5)


def uvicorn_proc(
    app: str,
    port: int,
    env: Mapping[str, str],
    log_path: Path,
    *,
    health_path: str | None = None,
    profile_to: Path | None = None,
    loop: str = "auto",
    http: str = "auto",
    workers: int = 1,
) -> ServerProc:
    """``tests.bench.serve`` running ``app`` under uvicorn with the benchmark's settings."""
    args = [PYTHON, "-m", "tests.bench.serve", "--app", app, "--port", str(port)]
    args += ["--loop", loop, "--http", http, "--workers", str(workers)]
    if profile_to is not None:
        args += ["--profile", str(profile_to)]
    health = f"http://{HOST}:{port}{health_path}" if health_path else None
    return ServerProc(args, env, log_path, port, health)


def service_proc(
    port: int,
    env: Mapping[str, str],
    log_path: Path,
    *,
    web_only: bool = False,
    worker: bool = False,
) -> ServerProc:
    """``upscale serve`` (``--web-only``) on ``port``: the service as its users start it,
    with the listener's guards and options; with ``worker``, an ``upscale worker`` on
    the same data beside it."""
    args = [PYTHON, "-m", "orchestrator.cli", "serve", "--host", HOST, "--port", str(port)]
    if web_only:
        args.append("--web-only")
    beside = [PYTHON, "-m", "orchestrator.cli", "worker"] if worker else None
    return ServerProc(args, env, log_path, port, f"http://{HOST}:{port}/healthz", beside)


# -- numbers ---------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    data = sorted(values)
    if len(data) == 1:
        return float(data[0])
    rank = (len(data) - 1) * p / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(data) - 1)
    return float(data[lo] + (data[hi] - data[lo]) * (rank - lo))


def proc_status_kb(pid: int | str = "self") -> dict[str, int]:
    """VmRSS, VmHWM, ... in kB from /proc/PID/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key.startswith("Vm"):
                out[key] = int(rest.split()[0])
    return out


def reset_peak_rss(pid: int | str = "self") -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False if not possible."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        raw = fh.read()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def system_busy_s() -> float:
    """CPU seconds spent busy by the whole machine (all cores), from /proc/stat."""
    with open("/proc/stat") as fh:
        fields = fh.readline().split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    # guest time is already counted in user time
    return (sum(values[:8]) - idle) / _TICK


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's finished (waited-for) children."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} on {os.cpu_count()} cores"


# -- the result table --------------------------------------------------------------------


@dataclass
class Row:
    benchmark: str
    figure: str
    value: str
    baseline: str = "-"
    ratio: str = "-"
    target: str = "-"
    met: str = "-"


def fmt(value: float, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def yes_no(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "NO")


def print_table(rows: Sequence[Row], out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    head = ("benchmark", "figure", "value", "baseline", "ratio", "target", "met?")
    table = [
        head,
        *((r.benchmark, r.figure, r.value, r.baseline, r.ratio, r.target, r.met) for r in rows),
    ]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(head))]
    sep = "-+-".join("-" * w for w in widths)

    def line(cells: Sequence[str]) -> str:
        return " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True))

    print(line(head), file=stream)
    print(sep, file=stream)
    for cells in table[1:]:
        print(line(cells), file=stream)
    stream.flush()


def note(message: str) -> None:
    """Progress and detail lines go to stderr, the table to stdout."""
    print(message, file=sys.stderr, flush=True)
