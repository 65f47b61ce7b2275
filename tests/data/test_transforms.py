"""The image transforms follow torchvision/timm: crop boxes, resize + center crop, colour jitter;
JPEGs are decoded at a reduced scale only when the crop keeps the output resolution."""

import io

import numpy as np
import pytest
from PIL import Image

from convnext_jax.data.images import open_image, reduction_for
from convnext_jax.data.transforms import (
    ColorJitter,
    RandomResizedCrop,
    ResizeCenterCrop,
    ToArray,
    _resize,
    as_array,
    random_resized_crop_box,
)


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)


def _jpeg(width: int, height: int) -> bytes:
    yy, xx = np.mgrid[0:height, 0:width]
    pixels = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) % 256], -1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_color_jitter_changes_colour_statistics(image):
    out = as_array(ColorJitter(0.4, 0.4, 0.4).random_map({"image": image}, np.random.default_rng(0))["image"])
    assert out.shape == image.shape and not np.array_equal(out, image)
    same = as_array(ColorJitter(0.0, 0.0, 0.0).random_map({"image": image}, np.random.default_rng(0))["image"])
    np.testing.assert_array_equal(same, image)


def test_random_resized_crop_box_respects_scale_and_ratio():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_box(100, 80, (0.08, 1.0), (3 / 4, 4 / 3), rng)
        assert 0 <= top and top + h <= 100 and 0 <= left and left + w <= 80
        assert 0.08 * 8000 * 0.9 <= h * w <= 8000
    # impossible request -> centre crop fallback clamped to the ratio range
    top, left, h, w = random_resized_crop_box(10, 100, (0.99, 1.0), (1.0, 1.0), np.random.default_rng(1))
    assert (h, w) == (10, 10) and left == 45


def test_eval_transform_resizes_then_center_crops(image):
    bar = np.zeros((40, 80, 3), np.uint8)
    bar[:, 38:42] = 255  # a bright vertical bar at the centre
    out = ToArray().map(ResizeCenterCrop(32, crop_pct=0.875).map({"image": bar, "label": 0}))["image"]
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8 and out[:, 16].mean() > 200 and out[:, 0].mean() < 5
    # resizing only the centre box samples the same grid as torchvision's resize-then-crop
    photo = np.random.default_rng(1).integers(0, 256, (75, 100, 3), dtype=np.uint8)
    full = np.asarray(Image.fromarray(photo).resize((48, 36), Image.BICUBIC))  # short side 36 = 32 / 0.875
    expected = full[2:34, 8:40]
    got = as_array(ResizeCenterCrop(32, crop_pct=0.875).map({"image": photo})["image"])
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_reduced_decoding_only_when_the_crop_keeps_the_resolution():
    data = _jpeg(640, 480)
    image = open_image(data, "x.jpg")
    assert reduction_for(image, (224, 224)) == 2 and reduction_for(image, (100, 100)) == 4
    assert reduction_for(image, (400, 300)) == 1  # 1/2 scale (320x240) would be too small
    assert reduction_for(Image.fromarray(np.zeros((480, 640, 3), np.uint8)), (10, 10)) == 1  # not a JPEG file
    box = (100, 80, 580, 440)  # 480x360 -> 224: decodable at 1/2 scale
    reduced = np.asarray(_resize(open_image(data, "x.jpg"), (224, 224), box, reduce=True)).astype(float)
    exact = np.asarray(_resize(open_image(data, "x.jpg"), (224, 224), box, reduce=False)).astype(float)
    assert reduced.shape == exact.shape == (224, 224, 3)
    assert np.abs(reduced - exact).mean() < 2.0  # the same picture, within JPEG/resampling noise


def test_random_resized_crop_on_files_and_arrays():
    rng = np.random.default_rng(0)
    crop = RandomResizedCrop(32)
    from_file = crop.random_map({"image": open_image(_jpeg(120, 90), "x.jpg")}, rng)["image"]
    from_array = crop.random_map({"image": np.zeros((90, 120, 3), np.uint8)}, rng)["image"]
    assert as_array(from_file).shape == as_array(from_array).shape == (32, 32, 3)
