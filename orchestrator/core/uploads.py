"""An image a client uploaded with a job (the image, or a replace job's mask): its
bytes, or the file it was staged to as it arrived."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from orchestrator.core.inputs import InputStore
from orchestrator.fetch.imagecheck import image_size
from schemas.api import StagedImage
from schemas.errors import RejectedInput


@dataclass(frozen=True, slots=True)
class Upload:
    """Exactly one of ``data`` and ``staged`` is set; ``what`` names it in refusals."""

    what: str
    data: bytes | None
    staged: StagedImage | None

    @classmethod
    def of(cls, data: bytes | None, staged: StagedImage | None, what: str) -> Upload | None:
        if staged is not None:
            return cls(what, None, staged)
        if data is not None:
            return cls(what, data, None)
        return None

    @property
    def digest(self) -> str:
        if self.staged is not None:
            return self.staged.sha256
        return hashlib.sha256(self.data or b"").hexdigest()

    def check(self, inputs: InputStore) -> None:
        """RejectedInput (or PayloadTooLarge) unless it is an image we take."""
        if self.staged is not None:
            inputs.check_head(self.staged.head, self.staged.size, self.what)
        elif self.data is not None:
            inputs.check(self.data, self.what)

    async def save(self, inputs: InputStore, stem: str) -> str:
        """Keep it in the input store under ``stem``; its key."""
        if self.staged is not None:
            return await inputs.save_staged(stem, self.staged)
        return await inputs.save(stem, self.data or b"")


async def checked_size(upload: Upload) -> tuple[int, int]:
    """The upload's width and height from its header; RejectedInput if unreadable."""
    source = upload.staged.path if upload.staged is not None else upload.data or b""
    size = await asyncio.to_thread(image_size, source)
    if size is None:
        raise RejectedInput(f"{upload.what} is not a readable image")
    return size
