"""The local provider's worker processes: a pool replaced when a worker dies."""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from orchestrator.local import engines

# The local server's log: operators filter on this name.
logger = logging.getLogger("orchestrator.local.server")


class WorkerPool:
    """The process pool, replaced when a worker dies (a broken pool takes no more work)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._threads = max(1, (os.cpu_count() or 1) // workers)
        self._pool: ProcessPoolExecutor | None = None
        self._retired: list[ProcessPoolExecutor] = []

    def start(self) -> None:
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=engines.init_worker,
            # Workers end with this process, even when it is killed outright.
            initargs=(self._threads, os.getpid()),
        )

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        pool = self._pool
        if pool is None:
            raise RuntimeError("the worker pool is not running")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, functools.partial(fn, *args, **kwargs))
        except BrokenProcessPool:
            if self._pool is pool:
                logger.error("local worker process died; starting a new pool")
                self._retired.append(pool)
                pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
            raise

    async def aclose(self, grace_s: float) -> None:
        pools = [*self._retired, *([self._pool] if self._pool is not None else [])]
        self._pool, self._retired = None, []
        for pool in pools:
            # Processes still running a job after the grace period are terminated
            # (``_processes`` is private; Python 3.14 adds ``terminate_workers()``).
            processes = list((getattr(pool, "_processes", None) or {}).values())
            shutdown = asyncio.ensure_future(
                asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
            )
            done, _ = await asyncio.wait({shutdown}, timeout=grace_s)
            if not done:
                logger.warning("local workers still busy after %gs; terminating them", grace_s)
                for process in processes:
                    process.terminate()
            await shutdown
