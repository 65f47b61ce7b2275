"""Per-example image transforms as grain transformations (NumPy/PIL, run in worker processes).

Semantics follow torchvision/timm: RandomResizedCrop (scale, log-uniform ratio, 10 attempts,
centre-crop fallback, bicubic), horizontal flip, and for evaluation resize to size/crop_pct
followed by a centre crop. Images travel between the ops as PIL images (a file's pixels are
decoded by the first op that needs them, at a reduced scale when the crop allows) and leave as
uint8 arrays (`ToArray`); normalisation and random erasing run on the device (`on_device`), as
in timm's GPU prefetcher.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import grain
import numpy as np
from PIL import Image

from convnext_jax.data import resample
from convnext_jax.data.images import EncodedImage, decode, decode_array, reduction_for
from convnext_jax.data.jpeg_region import MARGIN

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def as_pil(image: Image.Image | np.ndarray) -> Image.Image:
    """A PIL image of an (H, W, 3) uint8 array or of a (possibly lazily decoded) PIL image."""
    return decode(image)


def as_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 pixels (contiguous)."""
    return np.ascontiguousarray(image) if isinstance(image, np.ndarray) else decode_array(image)


def image_size(image: Image.Image | np.ndarray) -> tuple[int, int]:
    """(height, width) without decoding."""
    return (image.shape[0], image.shape[1]) if isinstance(image, np.ndarray) else (image.size[1], image.size[0])


def _resize(
    image: Image.Image | np.ndarray,
    size: tuple[int, int],
    box: tuple[float, float, float, float] | None = None,
    *,
    reduce: bool = False,
    native: bool = False,
) -> Image.Image | np.ndarray:
    """Bicubic (antialiased, as PIL/torchvision) resize to (height, width) of a crop box (x0, y0, x1, y1).

    With `reduce`, a JPEG is decoded at the largest DCT scale-down (1/2, 1/4, 1/8) that keeps the
    box at least `size`: the decoder's downscale replaces part of the resize's, so the output has
    the resolution asked for at a fraction of the decoding cost. `native`: decode to an array and
    resize with the native ops (`resample.resize`, Pillow's exact result); else with Pillow.
    """
    height, width = size
    full_h, full_w = image_size(image)
    box = box or (0, 0, full_w, full_h)
    factor = 1
    if reduce and not isinstance(image, np.ndarray):
        box_w, box_h = box[2] - box[0], box[3] - box[1]
        factor = reduction_for(image, (int(math.ceil(width * full_w / box_w)), int(math.ceil(height * full_h / box_h))))
    if factor > 1:  # the decoded image is ceil(size / factor), as libjpeg scales (Pillow's draft mode too)
        box = (
            box[0] / factor,
            box[1] / factor,
            min(box[2] / factor, -(-full_w // factor)),
            min(box[3] / factor, -(-full_h // factor)),
        )
    if native:
        if isinstance(image, EncodedImage):
            resized = _resize_region(image, size, box, factor)
            if resized is not None:
                return resized
        return resample.resize(decode_array(image, factor), size, box)
    return decode(image, factor).resize((width, height), Image.BICUBIC, box=box)


def _resize_region(
    image: EncodedImage, size: tuple[int, int], box: tuple[float, float, float, float], factor: int
) -> np.ndarray | None:
    """`_resize` of a JPEG (box in its 1/`factor` scaled pixels) decoding only the pixels the resize
    reads, plus a margin: the same result as decoding it whole. None when the region decoder cannot
    (the caller decodes whole)."""
    width, height = image.size
    full = (-(-height // factor), -(-width // factor))  # libjpeg's scaled size, ceil(size / factor)
    needed = resample.support(full, size, box)
    if needed is None:
        return None
    x0, y0 = max(0, needed[0] - MARGIN), max(0, needed[1] - MARGIN)
    x1, y1 = min(full[1], needed[2] + MARGIN), min(full[0], needed[3] + MARGIN)
    pixels = image.decode_region(factor, (x0, y0, x1, y1))
    if pixels is None:
        return None
    return resample.resize(pixels, size, box, origin=(x0, y0), full_size=full)


def random_resized_crop_box(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params: (top, left, crop_height, crop_width)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@dataclasses.dataclass
class RandomResizedCrop(grain.transforms.RandomMap):
    """torchvision's RandomResizedCrop (bicubic); `reduce` decodes JPEGs at 1/2, 1/4 or 1/8 scale when
    the crop is at least that many times the output size (see `_resize`)."""

    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    reduce: bool = True
    native: bool = False  # resize with the native ops (resample.py): the same pixels, faster

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        image = element["image"]
        top, left, h, w = random_resized_crop_box(*image_size(image), self.scale, self.ratio, rng)
        return {
            **element,
            "image": _resize(
                image, (self.size, self.size), (left, top, left + w, top + h), reduce=self.reduce, native=self.native
            ),
        }


@dataclasses.dataclass
class RandomHorizontalFlip(grain.transforms.RandomMap):
    prob: float = 0.5

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        if rng.random() < self.prob:
            image = element["image"]
            if isinstance(image, np.ndarray):
                return {**element, "image": image[:, ::-1]}
            return {**element, "image": as_pil(image).transpose(Image.Transpose.FLIP_LEFT_RIGHT)}
        return element


@dataclasses.dataclass
class ResizeCenterCrop(grain.transforms.Map):
    """Resize the shorter side to size / crop_pct (bicubic), then crop the centre size x size."""

    size: int
    crop_pct: float = 0.875
    native: bool = False  # resize with the native ops (resample.py): the same pixels, faster

    def map(self, element: dict[str, Any]) -> dict[str, Any]:
        image = element["image"]
        height, width = image_size(image)
        short = math.floor(self.size / self.crop_pct)
        if height <= width:
            new_h, new_w = short, max(short, int(short * width / height))
        else:
            new_h, new_w = max(short, int(short * height / width)), short
        top, left = (new_h - self.size) // 2, (new_w - self.size) // 2
        # Resizing only the centre box samples the same grid as resizing everything then cropping.
        sx, sy = width / new_w, height / new_h
        box = (left * sx, top * sy, (left + self.size) * sx, (top + self.size) * sy)
        return {**element, "image": _resize(image, (self.size, self.size), box, native=self.native)}


@dataclasses.dataclass
class ToArray(grain.transforms.Map):
    """The last per-example op: the image as an (H, W, 3) uint8 array (batches cross process
    boundaries and the host-device link as uint8, 4x smaller than float32)."""

    def map(self, element: dict[str, Any]) -> dict[str, Any]:
        return {**element, "image": as_array(element["image"])}


@dataclasses.dataclass
class ColorJitter(grain.transforms.RandomMap):
    """torchvision ColorJitter(brightness, contrast, saturation): factors ~ U[1-x, 1+x], random order."""

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        from PIL import ImageEnhance

        image = as_pil(element["image"])
        enhancers = [
            (ImageEnhance.Brightness, self.brightness),
            (ImageEnhance.Contrast, self.contrast),
            (ImageEnhance.Color, self.saturation),
        ]
        for index in rng.permutation(len(enhancers)):
            kind, strength = enhancers[index]
            if strength > 0:
                image = kind(image).enhance(rng.uniform(max(0.0, 1 - strength), 1 + strength))
        return {**element, "image": image}
