"""What every room of the engine works with: the store, the providers, the clock..."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from orchestrator.common.clock import Clock
from orchestrator.common.metrics import Metrics
from orchestrator.core.budgets import Budgets
from orchestrator.core.config import EngineConfig
from orchestrator.core.inputs import InputStore
from orchestrator.core.routing import Router
from orchestrator.providers.base import Provider
from orchestrator.store.protocol import Store
from schemas.jobs import Job, Operation, ResultInfo

# Every room logs under the engine's name, so the log lines read as they always have.
log = logging.getLogger("orchestrator.core.engine")


class Fetcher(Protocol):
    async def fetch(
        self, url: str, key_stem: str, *, size: tuple[int, int] | None = None
    ) -> ResultInfo: ...

    async def store_bytes(
        self, data: bytes, key_stem: str, *, size: tuple[int, int] | None = None
    ) -> ResultInfo: ...


@dataclass(frozen=True, slots=True)
class Parts:
    """The engine's collaborators, shared by its rooms. ``wake`` asks the loop to
    look for due work now instead of at its next check."""

    config: EngineConfig
    store: Store
    providers: Mapping[str, Provider]
    fetcher: Fetcher
    inputs: InputStore
    budgets: Budgets
    metrics: Metrics
    clock: Clock
    rng: random.Random
    wake: Callable[[], None]
    router: Router


def expected_size(job: Job) -> tuple[int, int] | None:
    """The width and height the job's result must have: a replace job's input size
    (None for an upscale, whose result is checked as an image only)."""
    if job.operation is not Operation.REPLACE:
        return None
    if job.input_width is None or job.input_height is None:
        return None
    return job.input_width, job.input_height
