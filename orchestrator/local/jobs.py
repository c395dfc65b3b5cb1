"""A job of the local provider as its server keeps it in memory, and its payload."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

QUEUED: Final = "QUEUED"
RUNNING: Final = "RUNNING"
SUCCEEDED: Final = "SUCCEEDED"
FAILED: Final = "FAILED"

RESULT_PREFIX: Final = "/results/"
"""Where results are served, relative to the app's mount point."""


@dataclass(slots=True)
class LocalJob:
    id: str
    token: str
    engine: str
    scale: float
    webhook: str | None
    base_url: str
    status: str = QUEUED
    width: int | None = None
    height: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    finished_at: float | None = None
    # ``upscale``, or ``replace`` (whose ``engine`` is the inpainting method, and scale 1).
    operation: str = "upscale"

    def payload(self) -> dict[str, Any]:
        """The ``GET /api/v1/jobs/{id}`` answer and the webhook body."""
        scale: float | int = int(self.scale) if self.scale.is_integer() else self.scale
        done = self.status == SUCCEEDED
        error = None
        if self.error_code is not None:
            error = {"code": self.error_code, "message": self.error_message or ""}
        return {
            "id": self.id,
            "status": self.status,
            "operation": self.operation,
            "engine": self.engine,
            "scale": scale,
            "result_url": f"{self.base_url}{RESULT_PREFIX}{self.token}.png" if done else None,
            "width": self.width if done else None,
            "height": self.height if done else None,
            "error": error,
        }
