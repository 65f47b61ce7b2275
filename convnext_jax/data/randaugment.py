"""RandAugment with timm's semantics ('rand-m9-mstd0.5-inc1'), driven by a NumPy Generator.

Each of `num_layers` ops is drawn uniformly (with replacement) from timm's increasing-severity
list and applied with probability `prob`; its magnitude is N(m, mstd) clipped to [0, mmax].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import grain
import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from convnext_jax.data import resample
from convnext_jax.data.transforms import as_array, as_pil

LEVEL_DENOM = 10.0


def _negate(value: float, rng: np.random.Generator) -> float:
    return -value if rng.random() > 0.5 else value


def _affine(image: Image.Image, matrix: tuple[float, ...], fill: tuple[int, ...]) -> Image.Image:
    return image.transform(image.size, Image.AFFINE, matrix, resample=Image.BICUBIC, fillcolor=fill)


def _solarize_add(image: Image.Image, add: int, threshold: int = 128) -> Image.Image:
    lut = [min(255, i + add) if i < threshold else i for i in range(256)]
    return image.point(lut * 3)


def _posterize(image: Image.Image, bits: int) -> Image.Image:
    """Keep the `bits` most significant bits; 0 bits -> black (Pillow >= 11 rejects bits=0)."""
    if bits >= 8:
        return image
    if bits <= 0:
        return Image.new(image.mode, image.size)
    return ImageOps.posterize(image, bits)


def _enhance_factor(level: float, rng: np.random.Generator) -> float:
    return max(0.1, 1.0 + _negate(level / LEVEL_DENOM * 0.9, rng))


def _enhance(kind: Any) -> Callable[[Image.Image, float, np.random.Generator, tuple], Image.Image]:
    def op(image: Image.Image, level: float, rng: np.random.Generator, fill: tuple) -> Image.Image:
        return kind(image).enhance(_enhance_factor(level, rng))

    return op


# name -> op(image, magnitude, rng, fill); the 'increasing' set of timm's rand augment (inc1).
OPS: dict[str, Callable[[Image.Image, float, np.random.Generator, tuple], Image.Image]] = {
    "AutoContrast": lambda im, m, rng, fill: ImageOps.autocontrast(im),
    "Equalize": lambda im, m, rng, fill: ImageOps.equalize(im),
    "Invert": lambda im, m, rng, fill: ImageOps.invert(im),
    "Rotate": lambda im, m, rng, fill: im.rotate(
        _negate(m / LEVEL_DENOM * 30.0, rng), resample=Image.BICUBIC, fillcolor=fill
    ),
    "PosterizeIncreasing": lambda im, m, rng, fill: _posterize(im, 4 - int(m / LEVEL_DENOM * 4)),
    "SolarizeIncreasing": lambda im, m, rng, fill: ImageOps.solarize(im, 256 - int(m / LEVEL_DENOM * 256)),
    "SolarizeAdd": lambda im, m, rng, fill: _solarize_add(im, min(128, int(m / LEVEL_DENOM * 110))),
    "ColorIncreasing": _enhance(ImageEnhance.Color),
    "ContrastIncreasing": _enhance(ImageEnhance.Contrast),
    "BrightnessIncreasing": _enhance(ImageEnhance.Brightness),
    "SharpnessIncreasing": _enhance(ImageEnhance.Sharpness),
    "ShearX": lambda im, m, rng, fill: _affine(im, (1, _negate(m / LEVEL_DENOM * 0.3, rng), 0, 0, 1, 0), fill),
    "ShearY": lambda im, m, rng, fill: _affine(im, (1, 0, 0, _negate(m / LEVEL_DENOM * 0.3, rng), 1, 0), fill),
    "TranslateXRel": lambda im, m, rng, fill: _affine(
        im, (1, 0, _negate(m / LEVEL_DENOM * 0.45, rng) * im.size[0], 0, 1, 0), fill
    ),
    "TranslateYRel": lambda im, m, rng, fill: _affine(
        im, (1, 0, 0, 0, 1, _negate(m / LEVEL_DENOM * 0.45, rng) * im.size[1]), fill
    ),
}


def rotation_matrix(angle: float, width: int, height: int) -> tuple[float, ...] | None:
    """The affine matrix of Pillow's `Image.rotate(angle)` about the centre (its own arithmetic),
    or None for the angles Pillow turns into a transpose (0, 180; 90/270 of a square)."""
    import math

    angle = angle % 360.0
    if angle in (0, 180) or (angle in (90, 270) and width == height):
        return None
    angle = -math.radians(angle)
    matrix = [
        round(math.cos(angle), 15),
        round(math.sin(angle), 15),
        0.0,
        round(-math.sin(angle), 15),
        round(math.cos(angle), 15),
        0.0,
    ]
    a, b, c, d, e, f = matrix
    center_x, center_y = width / 2, height / 2
    matrix[2], matrix[5] = a * -center_x + b * -center_y + c, d * -center_x + e * -center_y + f
    matrix[2] += center_x
    matrix[5] += center_y
    return tuple(matrix)


# Shears and translations as affine matrices (the same random draws as their OPS entries).
MATRICES: dict[str, Callable[[tuple[int, int], float, np.random.Generator], tuple[float, ...]]] = {
    "ShearX": lambda size, m, rng: (1, _negate(m / LEVEL_DENOM * 0.3, rng), 0, 0, 1, 0),
    "ShearY": lambda size, m, rng: (1, 0, 0, _negate(m / LEVEL_DENOM * 0.3, rng), 1, 0),
    "TranslateXRel": lambda size, m, rng: (1, 0, _negate(m / LEVEL_DENOM * 0.45, rng) * size[0], 0, 1, 0),
    "TranslateYRel": lambda size, m, rng: (1, 0, 0, 0, 1, _negate(m / LEVEL_DENOM * 0.45, rng) * size[1]),
}
GEOMETRIC = ("Rotate", *MATRICES)
# Enhancements done natively (resample.enhance, Pillow's bytes); Sharpness stays with Pillow.
ENHANCEMENTS = {"ColorIncreasing": "Color", "ContrastIncreasing": "Contrast", "BrightnessIncreasing": "Brightness"}


def _warp_native(name: str, image: Any, magnitude: float, rng: np.random.Generator, fill: tuple) -> Any:
    """A geometric op with the native bicubic warp: the same draws and the same pixels as OPS[name]."""
    pixels = as_array(image)
    height, width = pixels.shape[:2]
    if name == "Rotate":
        angle = _negate(magnitude / LEVEL_DENOM * 30.0, rng)
        matrix = rotation_matrix(angle, width, height)
        if matrix is None:  # Pillow transposes instead
            return as_pil(pixels).rotate(angle, resample=Image.BICUBIC, fillcolor=fill)
    else:
        matrix = MATRICES[name]((width, height), magnitude, rng)
    return resample.affine(pixels, matrix, fill)


@dataclasses.dataclass
class RandAugment(grain.transforms.RandomMap):
    """Per-example RandAugment on {"image": PIL image or uint8 HWC array} records (returns a PIL image)."""

    num_layers: int = 2
    magnitude: float = 9.0
    magnitude_std: float = 0.5
    magnitude_max: float = LEVEL_DENOM
    prob: float = 0.5
    fill: tuple[int, ...] = (124, 116, 104)  # ImageNet mean in 0..255, as timm
    native: bool = False  # warps and colour/contrast/brightness natively (resample.py): the same pixels, faster

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        image = element["image"]
        names = list(OPS)
        for index in rng.integers(0, len(names), self.num_layers):
            if rng.random() > self.prob:
                continue
            magnitude = self.magnitude
            if self.magnitude_std == float("inf"):
                magnitude = rng.uniform(0, magnitude)
            elif self.magnitude_std > 0:
                magnitude = rng.normal(magnitude, self.magnitude_std)
            magnitude = float(np.clip(magnitude, 0.0, self.magnitude_max))
            name = names[index]
            if self.native and name in GEOMETRIC:
                image = _warp_native(name, image, magnitude, rng, self.fill)
            elif self.native and name in ENHANCEMENTS:
                image = resample.enhance(as_array(image), ENHANCEMENTS[name], _enhance_factor(magnitude, rng))
            else:
                image = OPS[name](as_pil(image), magnitude, rng, self.fill)
        return {**element, "image": image}


def rand_augment_from_string(spec: str, fill: tuple[int, ...] = (124, 116, 104)) -> RandAugment:
    """Parse timm's config string, e.g. 'rand-m9-mstd0.5-inc1' (keys m, n, mstd, mmax, p, inc)."""
    parts = spec.split("-")
    if parts[0] != "rand":
        raise ValueError(
            f"auto_augment {spec!r} is not supported: use a RandAugment string like 'rand-m9-mstd0.5-inc1'"
        )
    options: dict[str, Any] = {"fill": fill}
    keys = {"mstd": "magnitude_std", "mmax": "magnitude_max", "m": "magnitude", "n": "num_layers", "p": "prob"}
    for part in parts[1:]:
        key = next((k for k in ("mstd", "mmax", "inc", "m", "n", "p") if part.startswith(k)), None)
        if key is None:
            raise ValueError(f"unknown RandAugment option {part!r} in {spec!r}; known: m, n, mstd, mmax, p, inc")
        value = float(part[len(key) :])
        if key == "inc":
            if not value:
                raise ValueError(f"{spec!r}: only the increasing-severity op set (inc1) is implemented")
            continue
        options[keys[key]] = int(value) if key == "n" else value
    return RandAugment(**options)
