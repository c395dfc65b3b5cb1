"""``since`` as clients send it (a duration such as ``24h``): the time that long ago."""

from __future__ import annotations

from datetime import datetime, timedelta

from orchestrator.common.durations import parse_duration
from orchestrator.service.runtime import Runtime
from schemas.errors import RejectedInput


def since_time(runtime: Runtime, value: str | None) -> datetime | None:
    """The time ``value`` ago by the service's clock; None when empty. Bounded (see
    ``parse_duration``), so never an overflow; a bad value is a RejectedInput."""
    if not value:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise RejectedInput(f"since: {exc}") from exc
    return runtime.orchestrator.clock.now() - timedelta(seconds=seconds)
