"""The ``pyanime4k`` engine: Anime4KCPP's ``acnet-gan`` CNN on the CPU.

The weights ship in the wheel. It does any factor itself (repeated 2x passes
and a resize); a final LANCZOS resize fixes its rounding to ours. When the
package cannot be imported this engine falls back to ``lanczos``.
"""

from __future__ import annotations

import functools
import importlib
import logging
from typing import Any, Final

from PIL import Image

from orchestrator.local.errors import EngineFailed, EngineUnavailable

# The engines' log: operators filter on this name.
logger = logging.getLogger("orchestrator.local.engines")

ANIME4K_MODEL: Final = "acnet-gan"


def _import(name: str) -> Any:
    """Import an optional, untyped native module (typed ``Any``)."""
    return importlib.import_module(name)


@functools.cache
def anime4k_core() -> Any | None:
    try:
        return _import("pyanime4k.pyac").pyac.core
    except Exception:  # not installed, or its native library does not load here
        logger.info("pyanime4k is not importable; its engine falls back to lanczos")
        return None


def anime4k(image: Image.Image, size: tuple[int, int], scale: float) -> Image.Image:
    """``image`` upscaled to ``size``; LANCZOS alone when ``pyanime4k`` is missing."""
    core = anime4k_core()
    if core is None:
        return image.resize(size, Image.Resampling.LANCZOS)
    np = _import("numpy")
    try:
        processor = _processor(ANIME4K_MODEL)
        out = processor(np.asarray(image), float(scale))
    except Exception as exc:  # the native library's errors are plain RuntimeErrors
        raise EngineFailed(f"pyanime4k failed: {type(exc).__name__}: {exc}") from exc
    result = Image.fromarray(np.ascontiguousarray(out, dtype=np.uint8))
    if result.size != size:
        result = result.resize(size, Image.Resampling.LANCZOS)
    return result


@functools.cache
def _processor(model: str) -> Any:
    core = anime4k_core()
    if core is None:
        raise EngineUnavailable("engine 'pyanime4k' is unavailable: install 'pyanime4k'")
    processor = core.Processor("cpu", 0, model)
    if not processor.ok():
        raise EngineUnavailable(f"pyanime4k cannot run on this CPU: {processor.error()}")
    return processor
