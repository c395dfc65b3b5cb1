"""The caps and timings one local provider server works within."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    max_input_pixels: int
    max_output_pixels: int
    max_input_bytes: int
    max_concurrent_jobs: int
    download_timeout_s: float
    result_ttl_s: float
    callback_attempts: int
    callback_backoff_s: float
    callback_timeout_s: float

    def too_many_bytes(self, what: str = "input image") -> str:
        """Why an input (``what``) over ``max_input_bytes`` is refused."""
        return f"{what} is larger than {self.max_input_bytes} bytes"
