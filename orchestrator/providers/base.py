"""The one protocol every provider adapter implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from schemas.errors import RejectedInput
from schemas.jobs import Operation, ProviderUpdate

CallbackMode = Literal["job", "account", "none"]


@dataclass(frozen=True, slots=True)
class SubmitRequest:
    job_id: str
    scale: float
    options: dict[str, Any]
    image_url: str | None
    image_bytes: bytes | None = field(default=None, repr=False)
    callback_url: str | None = field(default=None, repr=False)
    # A replace job: the prompt, and the mask the way the image is given
    # (a signed input URL, or its bytes for providers that take data inline).
    operation: Operation = Operation.UPSCALE
    prompt: str | None = None
    mask_url: str | None = field(default=None, repr=False)
    mask_bytes: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Accepted:
    """The provider took the job.

    ``update`` is set when the submit answer already carries the outcome
    (synchronous providers), so it is applied like any other signal.
    """

    provider_job_id: str
    cost: float | None = None
    update: ProviderUpdate | None = None


class Provider(Protocol):
    """A provider adapter. Methods raise only the project's own errors.

    - ``validate_options`` raises ``RejectedInput``;
    - ``submit`` and ``poll`` raise ``ProviderError`` subclasses;
    - ``parse_callback`` raises ``RejectedPayload``.
    """

    name: str
    callback_mode: CallbackMode
    needs_image_url: bool
    # The operations this provider offers; intake refuses any other with a 400.
    operations: frozenset[Operation]

    def validate_options(
        self, scale: float, options: dict[str, Any], *, operation: Operation = Operation.UPSCALE
    ) -> dict[str, Any]: ...

    async def submit(self, request: SubmitRequest) -> Accepted: ...

    async def poll(self, provider_job_id: str) -> ProviderUpdate: ...

    def parse_callback(self, body: bytes) -> ProviderUpdate: ...


@runtime_checkable
class HasBalance(Protocol):
    """A provider that can tell the account's remaining credit."""

    async def balance(self) -> dict[str, Any]: ...


def refuse_other_operations(provider: str, operation: Operation) -> None:
    """For adapters that offer only upscaling: any other operation is bad input
    (intake refuses it first, naming the providers that offer it)."""
    if operation is not Operation.UPSCALE:
        raise RejectedInput(f"{provider} does not offer the operation '{operation}'")
