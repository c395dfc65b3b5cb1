"""Processes seen through /proc (Linux): who descends from whom, who is still alive."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None once it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Running (a zombie has exited: it only waits for its parent to reap it)."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def parent(pid: int) -> int:
    """The parent's pid (0 once the process is gone)."""
    stat = _stat(pid)
    return 0 if stat is None else stat[1]


def pids() -> list[int]:
    return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]


def descendants(root: int) -> set[int]:
    parents = {pid: stat[1] for pid in pids() if (stat := _stat(pid)) is not None}
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def marked(name: str, value: str) -> set[int]:
    """Processes whose environment has ``name=value``: started by whoever set it,
    still found after their parent died and they were handed to another."""
    needle = f"{name}={value}".encode()
    found: set[int] = set()
    for pid in pids():
        try:
            environ = (PROC / str(pid) / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and alive(pid):
            found.add(pid)
    return found


def wait_gone(candidates: Iterable[int], timeout_s: float) -> set[int]:
    """Wait until none of these processes runs; return those still running."""
    left = set(candidates)
    deadline = time.monotonic() + timeout_s
    while left and time.monotonic() < deadline:
        left = {pid for pid in left if alive(pid)}
        if left:
            time.sleep(0.1)
    return {pid for pid in left if alive(pid)}


def command(pid: int) -> str:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()
