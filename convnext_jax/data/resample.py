"""Resize and affine-warp RGB uint8 arrays with Pillow's exact arithmetic: natively
(`kernels/image_cpu.cc`, compiled on first use like the XLA:CPU kernels) or with Pillow itself.

Both give the same bytes (tested on random crops, sizes and matrices), so the choice
(`data.image_ops`: auto | native | pil) changes speed only: the native resize is several times
faster than Pillow's (packed RGB instead of RGBX, SIMD), and ctypes releases the GIL around it.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import numpy as np
from PIL import Image

from convnext_jax.errors import ConfigError
from convnext_jax.kernels.build import FLAGS, KERNEL_DIR, OptionalLibrary, load_library

IMAGE_OPS = ("auto", "native", "pil")
FILTERS = {Image.BILINEAR: 2, Image.BICUBIC: 3}  # Pillow's Resampling numbers, as the C code takes them


def _load() -> ctypes.CDLL:
    lib = load_library(
        (KERNEL_DIR / "image_cpu.cc",), (), (*FLAGS, "-ffp-contract=off"), "convnext_image_ops.so", with_jaxlib=False
    )
    p, i, f = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
    lib.convnext_resize_rgb.argtypes = [p, p, i, i, ctypes.c_int64, p, i, i, f, f, f, f, i, p]
    lib.convnext_resize_rgb.restype = i
    lib.convnext_resize_support.argtypes = [i, i, i, i, f, f, f, f, i, ctypes.POINTER(ctypes.c_int)]
    lib.convnext_resize_support.restype = i
    lib.convnext_resize_scratch_bytes.argtypes = [i, i, i, i]
    lib.convnext_resize_scratch_bytes.restype = ctypes.c_int64
    lib.convnext_affine_bicubic_rgb.argtypes = [p, i, i, p, p, p]
    lib.convnext_affine_bicubic_rgb.restype = None
    lib.convnext_enhance_rgb.argtypes = [p, ctypes.c_int64, p, i, f]
    lib.convnext_enhance_rgb.restype = None
    return lib


# The native image ops (built on first use), or None when they cannot be built (logged once).
native_library = OptionalLibrary(_load, "native image ops unavailable, resizing with Pillow (same pixels, slower)")


def use_native(image_ops: str) -> bool:
    """Whether `data.image_ops` means the native ops here; 'native' that cannot build is an error."""
    if image_ops not in IMAGE_OPS:
        raise ConfigError(f"data.image_ops must be one of {IMAGE_OPS}, got {image_ops!r}")
    if image_ops == "pil":
        return False
    available = native_library() is not None
    if image_ops == "native" and not available:
        raise ConfigError(
            "data.image_ops='native' but the native image ops cannot be built (no C++ compiler?): "
            "install g++ or set data.image_ops='auto'"
        )
    return available


def _packed(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 pixels, got {pixels.dtype} {pixels.shape}")
    return (
        pixels
        if pixels.strides[1:] == (3, 1) and pixels.strides[0] >= 3 * pixels.shape[1]
        else np.ascontiguousarray(pixels)
    )


def resize(
    pixels: np.ndarray,
    size: tuple[int, int],
    box: Sequence[float] | None = None,
    *,
    resample: int = Image.BICUBIC,
    native: bool = True,
    origin: tuple[int, int] = (0, 0),
    full_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Pillow's `Image.resize((width, height), resample, box)` of (H, W, 3) uint8 pixels to
    size = (height, width); box = (x0, y0, x1, y1) in input pixels (default: the whole image).

    `pixels` may be only a region of the image, at `origin` = (x, y) of an image of `full_size` =
    (height, width), if it holds every pixel the resize reads (`support`): the result is that of
    the whole image (native only).
    """
    height, width = size
    in_h, in_w = full_size or pixels.shape[:2]
    box = tuple(box) if box is not None else (0, 0, in_w, in_h)
    lib = native_library() if native and resample in FILTERS else None
    if lib is None:
        if full_size is not None and (origin != (0, 0) or full_size != pixels.shape[:2]):
            raise ValueError("resizing a region of an image needs the native ops")
        return np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).resize((width, height), resample, box=box))
    pixels = _packed(pixels)
    out = np.empty((height, width, 3), np.uint8)
    scratch = np.empty(lib.convnext_resize_scratch_bytes(in_h, in_w, height, width), np.uint8)
    stride = pixels.strides[0]
    start = pixels.ctypes.data
    status = lib.convnext_resize_rgb(
        start - origin[1] * stride - origin[0] * 3,
        start + pixels.nbytes,
        in_h,
        in_w,
        stride,
        out.ctypes.data,
        height,
        width,
        *(float(v) for v in box),
        FILTERS[resample],
        scratch.ctypes.data,
    )
    if status != 0:
        raise ValueError(f"cannot resize {in_w}x{in_h} to {width}x{height} with box {box}")
    return out


def support(
    full_size: tuple[int, int], size: tuple[int, int], box: Sequence[float], resample: int = Image.BICUBIC
) -> tuple[int, int, int, int] | None:
    """The pixels (x0, y0, x1, y1) of an image of full_size = (height, width) that `resize` to
    size = (height, width) with `box` reads; None without the native ops."""
    lib = native_library()
    if lib is None or resample not in FILTERS:
        return None
    region = (ctypes.c_int * 4)()
    if lib.convnext_resize_support(*full_size, *size, *(float(v) for v in box), FILTERS[resample], region) != 0:
        return None
    return tuple(region)  # type: ignore[return-value]


def affine(pixels: np.ndarray, matrix: Sequence[float], fill: Sequence[int], *, native: bool = True) -> np.ndarray:
    """Pillow's `Image.transform(size, AFFINE, matrix, BICUBIC, fillcolor=fill)` of (H, W, 3) uint8
    pixels (output the same size; matrix maps output pixel centres to input coordinates)."""
    lib = native_library() if native else None
    if lib is None:
        image = Image.fromarray(np.ascontiguousarray(pixels))
        return np.asarray(
            image.transform(image.size, Image.AFFINE, tuple(matrix), resample=Image.BICUBIC, fillcolor=tuple(fill))
        )
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    out = np.empty_like(pixels)
    coefficients = np.asarray(matrix[:6], np.float64)
    colour = np.asarray(fill[:3], np.uint8)
    lib.convnext_affine_bicubic_rgb(
        pixels.ctypes.data, height, width, out.ctypes.data, coefficients.ctypes.data, colour.ctypes.data
    )
    return out


ENHANCEMENTS = {"Brightness": 0, "Color": 1, "Contrast": 2}  # the C code's kinds


def enhance(pixels: np.ndarray, kind: str, factor: float, *, native: bool = True) -> np.ndarray:
    """Pillow's `ImageEnhance.<kind>(image).enhance(factor)` (Brightness, Color or Contrast) of
    (H, W, 3) uint8 pixels."""
    lib = native_library() if native else None
    if lib is None:
        from PIL import ImageEnhance

        return np.asarray(getattr(ImageEnhance, kind)(Image.fromarray(np.ascontiguousarray(pixels))).enhance(factor))
    pixels = np.ascontiguousarray(pixels)
    out = np.empty_like(pixels)
    lib.convnext_enhance_rgb(
        pixels.ctypes.data, pixels.shape[0] * pixels.shape[1], out.ctypes.data, ENHANCEMENTS[kind], float(factor)
    )
    return out
