"""Decode only the part of a JPEG a crop needs (`kernels/jpeg_cpu.cc`, libjpeg's skip/crop
scanline API), built on first use and linked to the libjpeg-turbo that Pillow bundles (or the
system's libjpeg.so.62). Where neither exists, or the build fails, `decode_region` returns None
and images are decoded whole (simplejpeg), with the same pixels.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os

import numpy as np

from convnext_jax.kernels.build import FLAGS, KERNEL_DIR, KernelBuildError, OptionalLibrary, load_library

MARGIN = 8  # decoded pixels around what the resize reads: the upsampler's neighbours at the region's edge


def libjpeg_path() -> str | None:
    """Pillow's bundled libjpeg (what decodes images everywhere Pillow's wheel does), else the system's."""
    import PIL

    bundled = sorted(glob.glob(os.path.join(os.path.dirname(PIL.__file__), os.pardir, "pillow.libs", "libjpeg*.so*")))
    if bundled:
        return os.path.realpath(bundled[0])
    return ctypes.util.find_library("jpeg")


def _load() -> ctypes.CDLL:
    libjpeg = libjpeg_path()
    if libjpeg is None:
        raise KernelBuildError("no libjpeg found (neither Pillow's bundled one nor libjpeg.so.62)")
    if os.path.isabs(libjpeg):
        link = (
            f"-L{os.path.dirname(libjpeg)}",
            f"-l:{os.path.basename(libjpeg)}",
            f"-Wl,-rpath,{os.path.dirname(libjpeg)}",
        )
    else:
        link = (f"-l:{libjpeg}",)
    lib = load_library(
        (KERNEL_DIR / "jpeg_cpu.cc",),
        tuple(sorted((KERNEL_DIR / "libjpeg").glob("*.h"))),
        FLAGS,
        "convnext_jpeg_region.so",
        libraries=link,
        with_jaxlib=False,
    )
    fn = lib.convnext_jpeg_decode_region
    fn.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_char_p,
        ctypes.c_int,
    ]
    fn.restype = ctypes.c_int
    return lib


# The region decoder (built on first use), or None when it cannot be built (logged once).
decoder = OptionalLibrary(_load, "JPEG region decoding unavailable, decoding whole images (same pixels, slower)")


def decode_region(data: bytes, reduction: int, region: tuple[int, int, int, int]) -> np.ndarray | None:
    """The pixels region = (x0, y0, x1, y1) of the JPEG `data` decoded at 1/`reduction` scale, as
    (y1 - y0, x1 - x0, 3) uint8; None when the region decoder is unavailable or libjpeg reports
    damage or an unsupported colour space (decode the whole file instead: that path names bad files)."""
    lib = decoder()
    if lib is None:
        return None
    x0, y0, x1, y1 = region
    out = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
    status = lib.convnext_jpeg_decode_region(
        data, len(data), reduction, x0, y0, x1, y1, out.ctypes.data, out.strides[0], None, 0
    )
    return out if status == 0 else None
