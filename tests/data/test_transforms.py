"""The image transforms follow torchvision/timm: crop boxes, resize + center crop, normalisation,
colour jitter, random erasing."""

import numpy as np
import pytest

from convnext_jax.data.transforms import (ColorJitter, Normalize, RandomErasing, ResizeCenterCrop,
                                         random_resized_crop_box)


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)


def test_color_jitter_changes_colour_statistics(image):
    out = ColorJitter(0.4, 0.4, 0.4).random_map({"image": image}, np.random.default_rng(0))["image"]
    assert out.shape == image.shape and not np.array_equal(out, image)
    same = ColorJitter(0.0, 0.0, 0.0).random_map({"image": image}, np.random.default_rng(0))["image"]
    np.testing.assert_array_equal(same, image)


def test_random_erasing_replaces_one_rectangle():
    x = np.zeros((32, 32, 3), np.float32)
    out = RandomErasing(prob=1.0).random_map({"image": x}, np.random.default_rng(3))["image"]
    erased = np.any(out != 0, axis=-1)
    rows, cols = np.where(erased)
    area = erased.sum() / erased.size
    assert 0.015 < area < 0.34
    assert erased[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # a filled rectangle
    np.testing.assert_array_equal(RandomErasing(prob=0.0).random_map({"image": x}, np.random.default_rng(3))["image"], x)


def test_random_resized_crop_box_respects_scale_and_ratio():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_box(100, 80, (0.08, 1.0), (3 / 4, 4 / 3), rng)
        assert 0 <= top and top + h <= 100 and 0 <= left and left + w <= 80
        assert 0.08 * 8000 * 0.9 <= h * w <= 8000
    # impossible request -> centre crop fallback clamped to the ratio range
    top, left, h, w = random_resized_crop_box(10, 100, (0.99, 1.0), (1.0, 1.0), np.random.default_rng(1))
    assert (h, w) == (10, 10) and left == 45


def test_eval_transform_resizes_then_center_crops():
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, 38:42] = 255  # a bright vertical bar at the centre
    out = ResizeCenterCrop(32, crop_pct=0.875).map({"image": image, "label": 0})["image"]
    assert out.shape == (32, 32, 3) and out[:, 16].mean() > 200 and out[:, 0].mean() < 5


def test_normalize_on_and_off():
    image = np.full((2, 2, 3), 255, np.uint8)
    assert np.allclose(Normalize(None, None).map({"image": image})["image"], 1.0)
    normed = Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).map({"image": image})["image"]
    assert normed.dtype == np.float32 and np.allclose(normed, 2.0)
