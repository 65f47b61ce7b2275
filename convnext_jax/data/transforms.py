"""Per-example image transforms as grain transformations (NumPy/PIL, run in worker processes).

Semantics follow torchvision/timm: RandomResizedCrop (scale, log-uniform ratio, 10 attempts,
centre-crop fallback, bicubic), horizontal flip, and for evaluation resize to size/crop_pct
followed by a centre crop.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import grain
import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _resize(image: np.ndarray, size: tuple[int, int], box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Bicubic resize of a uint8 HWC array to (height, width), optionally of a crop box (x0, y0, x1, y1)."""
    height, width = size
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC, box=box))


def random_resized_crop_box(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                            rng: np.random.Generator) -> tuple[int, int, int, int]:
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
    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        image = element["image"]
        top, left, h, w = random_resized_crop_box(image.shape[0], image.shape[1], self.scale, self.ratio, rng)
        return {**element, "image": _resize(image, (self.size, self.size), (left, top, left + w, top + h))}


@dataclasses.dataclass
class RandomHorizontalFlip(grain.transforms.RandomMap):
    prob: float = 0.5

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        if rng.random() < self.prob:
            return {**element, "image": np.ascontiguousarray(element["image"][:, ::-1])}
        return element


@dataclasses.dataclass
class ResizeCenterCrop(grain.transforms.Map):
    """Resize the shorter side to size / crop_pct (bicubic), then crop the centre size x size."""

    size: int
    crop_pct: float = 0.875

    def map(self, element: dict[str, Any]) -> dict[str, Any]:
        image = element["image"]
        height, width = image.shape[:2]
        short = math.floor(self.size / self.crop_pct)
        if height <= width:
            new_h, new_w = short, max(short, int(short * width / height))
        else:
            new_h, new_w = max(short, int(short * height / width)), short
        image = _resize(image, (new_h, new_w))
        top, left = (new_h - self.size) // 2, (new_w - self.size) // 2
        return {**element, "image": image[top : top + self.size, left : left + self.size]}


@dataclasses.dataclass
class Normalize(grain.transforms.Map):
    """uint8 -> float32 in [0, 1], then (x - mean) / std unless mean/std are None (normalisation off)."""

    mean: tuple[float, ...] | None = IMAGENET_MEAN
    std: tuple[float, ...] | None = IMAGENET_STD

    def map(self, element: dict[str, Any]) -> dict[str, Any]:
        image = element["image"].astype(np.float32) / 255.0
        if self.mean is not None and self.std is not None:
            image = (image - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return {**element, "image": image}


@dataclasses.dataclass
class ColorJitter(grain.transforms.RandomMap):
    """torchvision ColorJitter(brightness, contrast, saturation): factors ~ U[1-x, 1+x], random order."""

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        from PIL import ImageEnhance

        image = Image.fromarray(element["image"])
        enhancers = [(ImageEnhance.Brightness, self.brightness), (ImageEnhance.Contrast, self.contrast),
                     (ImageEnhance.Color, self.saturation)]
        for index in rng.permutation(len(enhancers)):
            kind, strength = enhancers[index]
            if strength > 0:
                image = kind(image).enhance(rng.uniform(max(0.0, 1 - strength), 1 + strength))
        return {**element, "image": np.asarray(image)}


@dataclasses.dataclass
class RandomErasing(grain.transforms.RandomMap):
    """timm RandomErasing(mode='pixel') on the normalised float image: with probability `prob`
    replace a rectangle (area 2%..1/3, aspect 0.3..3.3) by per-pixel N(0, 1) noise."""

    prob: float = 0.25
    min_area: float = 0.02
    max_area: float = 1 / 3
    min_aspect: float = 0.3
    max_count: int = 1

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        if rng.random() > self.prob:
            return element
        image = np.array(element["image"], dtype=np.float32, copy=True)
        height, width, channels = image.shape
        log_ratio = (math.log(self.min_aspect), math.log(1 / self.min_aspect))
        count = self.max_count if self.max_count == 1 else int(rng.integers(1, self.max_count + 1))
        for _ in range(count):
            for _attempt in range(10):
                area = rng.uniform(self.min_area, self.max_area) * height * width / count
                aspect = math.exp(rng.uniform(*log_ratio))
                h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
                if 0 < h < height and 0 < w < width:
                    top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
                    image[top : top + h, left : left + w] = rng.standard_normal((h, w, channels), dtype=np.float32)
                    break
        return {**element, "image": image}
