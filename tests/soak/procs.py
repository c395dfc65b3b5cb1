"""Processes of a soak run, found through /proc: the run's tag in their environment,
their memory and CPU over time, and whatever is left behind at the end."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.util import proc_cpu_s, proc_status_kb

RUN_ENV = "SOAK_RUN_ID"  # not UPSCALE_*: the harness passes it through to every process


def tag_this_run() -> str:
    """Mark every process this run starts (and theirs): they inherit the environment."""
    run_id = secrets.token_hex(8)
    os.environ[RUN_ENV] = run_id
    return run_id


def tagged_pids(run_id: str) -> list[int]:
    """Live processes carrying this run's tag, other than this one."""
    marker = f"{RUN_ENV}={run_id}".encode()
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return sorted(found)


def kill_pids(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def children_of(pid: int) -> list[int]:
    """Every descendant of ``pid``."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cpu_s(pids: Iterable[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += proc_cpu_s(pid)
    return total


def rss_kb(pid: int) -> int | None:
    try:
        return proc_status_kb(pid).get("VmRSS")
    except OSError:
        return None


@dataclass
class Series:
    label: str
    pid: int
    points: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, RSS kB)


class Sampler:
    """Samples the RSS of the service processes every ``every_s`` until stopped."""

    def __init__(self, processes: Callable[[], list[tuple[str, int]]], every_s: float = 2.0):
        self._processes = processes
        self._every_s = every_s
        self.series: dict[int, Series] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            now = time.monotonic()
            for label, pid in self._processes():
                rss = rss_kb(pid)
                if rss is not None:
                    self.series.setdefault(pid, Series(label, pid)).points.append((now, rss))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def describe(pid: int) -> str:
    """``pid`` and the start of its command line, for a report."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"{pid} (gone)"
    command = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return f"{pid} {command[:80]}"
