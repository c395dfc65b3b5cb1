"""The local provider's errors.

Picklable, so they cross the process boundary intact; ``code`` is what the
local server reports::

    RejectedInput (schemas.errors)   code
     ├── InvalidImage                invalid_image     not an image we read
     ├── InputTooLarge               input_too_large   input, output or work size over a cap
     ├── UnknownEngine               unknown_engine    not one of ENGINES
     └── InvalidMask                 invalid_mask      a replace mask we cannot read, or
                                                       not of the image's size
    UpscaleError (schemas.errors)
     ├── EngineUnavailable           engine_unavailable  the engine's packages are missing
     └── EngineFailed                engine_failed       the engine broke on a valid input
"""

from __future__ import annotations

from schemas.errors import RejectedInput, UpscaleError


class InvalidImage(RejectedInput):
    code = "invalid_image"


class InputTooLarge(RejectedInput):
    code = "input_too_large"


class UnknownEngine(RejectedInput):
    code = "unknown_engine"


class InvalidMask(RejectedInput):
    code = "invalid_mask"


class EngineUnavailable(UpscaleError):
    code = "engine_unavailable"


class EngineFailed(UpscaleError):
    code = "engine_failed"
