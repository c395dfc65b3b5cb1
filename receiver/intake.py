"""What a new job may ask of us, beyond its shape: a provider we offer."""

from __future__ import annotations

from orchestrator.runtime import Runtime
from schemas.api import CreateJob
from schemas.errors import RejectedInput


def offered_providers(runtime: Runtime) -> frozenset[str]:
    """Providers a request may name: those offered and those that need a key (so a
    job for one of them is refused with what to do, not as an unknown name)."""
    return frozenset(runtime.providers) | frozenset(runtime.unavailable)


async def check_job_request(runtime: Runtime, request: CreateJob) -> None:
    why = runtime.unavailable.get(request.provider)
    if why is not None:
        raise RejectedInput(why)
