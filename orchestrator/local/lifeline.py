"""A worker process that ends when the process that started it dies.

A pool worker is a child of the service. If the service is killed outright
(SIGKILL, the OOM killer), nothing shuts the pool down: its workers would run
on as orphans, and each restart would start another set. So each worker asks
the kernel for SIGKILL when its parent dies (Linux ``PR_SET_PDEATHSIG``), and a
thread of its own also looks every second whether it was handed to another
parent, for systems without that call. multiprocessing's resource tracker
exits by itself once the last process holding its pipe is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
CHECK_S = 1.0


def bind_to_parent(parent_pid: int, *, check_s: float = CHECK_S) -> None:
    """Make this process exit when ``parent_pid`` (its parent) dies."""
    _ask_kernel()
    # The parent may have died before the kernel was asked.
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(
        target=_watch, args=(parent_pid, check_s), name="parent-watch", daemon=True
    ).start()


def _ask_kernel() -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _watch(parent_pid: int, check_s: float) -> None:
    while os.getppid() == parent_pid:
        time.sleep(check_s)
    os._exit(1)
