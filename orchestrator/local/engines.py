"""Upscaling engines of the local provider, run in worker processes.

:func:`upscale_file` reads an image file, upscales it by ``scale`` with one of
the engines below and writes a PNG of exactly ``round(width * scale)`` x
``round(height * scale)`` pixels. It is a top-level function with plain
arguments, so a ``ProcessPoolExecutor`` can run it; it blocks and is CPU-bound,
so it must never run on the event loop.

Engines:

- ``pyanime4k``: Anime4KCPP's CNN on the CPU (:mod:`orchestrator.local.anime4k`);
  it falls back to ``lanczos`` when the package cannot be imported.
- ``lanczos``: Pillow's LANCZOS resampling. Always there.
- ``realesrgan``: Real-ESRGAN x4plus through ``ncnn`` on the CPU, in tiles
  (:mod:`orchestrator.local.realesrgan`). Slow on a CPU.

The input and the size asked for are checked by :mod:`orchestrator.local.images`
before any pixel is decoded; the errors are those of :mod:`orchestrator.local.errors`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

from PIL import Image

from orchestrator.local.anime4k import anime4k, anime4k_core
from orchestrator.local.errors import EngineFailed, UnknownEngine
from orchestrator.local.images import (
    DEFAULT_MAX_OUTPUT_PIXELS,
    check_scale,
    check_size,
    decode,
    output_size,
    probe_image,
)
from orchestrator.local.lifeline import bind_to_parent
from orchestrator.local.realesrgan import realesrgan, realesrgan_missing
from orchestrator.security.private_files import create_private_file

__all__ = [
    "ENGINES",
    "available_engines",
    "default_engine",
    "init_worker",
    "upscale_file",
    "warm_up",
    "write_png",
]

ENGINES: Final = ("pyanime4k", "lanczos", "realesrgan")
"""Every engine this module knows, in order of preference for the default."""

PNG_COMPRESS_LEVEL: Final = 3

# Threads a native engine may use in this process (set by init_worker).
_threads = max(1, os.cpu_count() or 1)


def available_engines() -> list[str]:
    """The engines that run in this environment, in order of preference."""
    engines = []
    if anime4k_core() is not None:
        engines.append("pyanime4k")
    engines.append("lanczos")
    if realesrgan_missing() is None:
        engines.append("realesrgan")
    return engines


def default_engine() -> str:
    """``pyanime4k`` when it is importable, else ``lanczos``."""
    return available_engines()[0]


# --- worker process ------------------------------------------------------------------


def init_worker(threads: int, parent_pid: int | None = None) -> None:
    """Pool initializer: how many threads a native engine may use in this process;
    with ``parent_pid``, the worker ends when that process (its parent) dies."""
    global _threads
    _threads = max(1, int(threads))
    if parent_pid is not None:
        bind_to_parent(parent_pid)


def warm_up() -> list[str]:
    """Import the engines' modules now, so the first job does not pay for it."""
    return available_engines()


# --- upscaling -----------------------------------------------------------------------


def upscale_file(
    src: str,
    dst: str,
    scale: float,
    engine: str,
    max_input_pixels: int,
    *,
    max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS,
) -> tuple[int, int]:
    """Upscale the image at ``src`` into a PNG at ``dst``; return its ``(width, height)``.

    ``dst`` appears whole or not at all (written next to it, then renamed).
    """
    if engine not in ENGINES:
        raise UnknownEngine(f"unknown engine '{engine}' (known: {', '.join(ENGINES)})")
    scale = check_scale(scale)
    width, height = probe_image(src, max_input_pixels)
    check_size(
        width,
        height,
        scale,
        engine,
        max_input_pixels=max_input_pixels,
        max_output_pixels=max_output_pixels,
    )
    image = decode(src)
    size = output_size(image.width, image.height, scale)
    if engine == "pyanime4k":
        result = anime4k(image, size, scale)
    elif engine == "realesrgan":
        result = realesrgan(image, size, _threads)
    else:
        result = image.resize(size, Image.Resampling.LANCZOS)
    if result.size != size:  # an engine bug; never hand out the wrong size
        raise EngineFailed(f"engine {engine} produced {result.size}, expected {size}")
    write_png(result, dst)
    return result.size


def write_png(image: Image.Image, dst: str) -> None:
    """Write ``image`` as a PNG at ``dst``, whole or not at all (a ``.part`` file renamed)."""
    part = f"{dst}.part"
    try:
        with os.fdopen(create_private_file(Path(part), exclusive=False), "wb") as out:
            image.save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        os.replace(part, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(part)
        raise
