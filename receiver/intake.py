"""What a new job may ask of us, beyond its shape: a provider we offer, an operation
it offers, and URLs we may reach (its input image, its ``webhook_url``). Each
refusal is a 400 that says why."""

from __future__ import annotations

from orchestrator.fetch.destinations import refuse_private_url
from orchestrator.service.runtime import Runtime
from schemas.api import CreateJob
from schemas.errors import RejectedInput
from schemas.jobs import Operation


def offered_providers(runtime: Runtime) -> frozenset[str]:
    """Providers a request may name: those offered and those that need a key (so a
    job for one of them is refused with what to do, not as an unknown name)."""
    return frozenset(runtime.providers) | frozenset(runtime.unavailable)


async def check_job_request(runtime: Runtime, request: CreateJob) -> None:
    # Every provider of a route is checked up front: a fallback that could never
    # take the job is a 400 now, not a failure an hour later.
    for provider in request.route or (request.provider,):
        why = runtime.unavailable.get(provider)
        if why is not None:
            raise RejectedInput(why)
        check_operation(runtime, provider, request.operation)
    if request.image_url is not None:
        await refuse_private_url(
            request.image_url,
            runtime.fetch_allow,
            what="image URL",
            setting="UPSCALE_FETCH_ALLOW_HOSTS",
        )
    if request.webhook_url is not None:
        await check_webhook_url(runtime, request.webhook_url)


async def check_webhook_url(runtime: Runtime, url: str) -> None:
    await refuse_private_url(
        url, runtime.webhook_allow, what="webhook URL", setting="UPSCALE_WEBHOOK_ALLOW_HOSTS"
    )


def check_operation(runtime: Runtime, provider: str, operation: Operation) -> None:
    """RejectedInput unless ``provider`` offers ``operation``; the message names the
    providers that do."""
    if operation in runtime.providers[provider].operations:
        return
    offering = sorted(name for name, p in runtime.providers.items() if operation in p.operations)
    which = (
        f"providers that do: {', '.join(offering)}"
        if offering
        else "no provider configured here does"
    )
    raise RejectedInput(f"provider {provider} does not offer operation {operation.value}; {which}")
