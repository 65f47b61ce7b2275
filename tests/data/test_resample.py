"""The native image ops give Pillow's bytes exactly (resize, affine warp, rotation), and the whole
training/evaluation transform gives the same arrays with them as with Pillow; JPEGs decoded with
libjpeg-turbo directly (EncodedImage) equal Pillow's decode, at every DCT scale."""

import io
import math

import numpy as np
import pytest
from PIL import Image

from convnext_jax.data import resample
from convnext_jax.data.images import BadImageError, open_image
from convnext_jax.data.pipeline import apply_op, eval_transforms, train_transforms
from convnext_jax.data.randaugment import rotation_matrix

pytestmark = pytest.mark.skipif(resample.native_library() is None, reason="no C++ compiler for the native ops")


def _photo(rng, height, width):
    """Random pixels, half of them smoothed (flat areas hit exact-integer interpolation results)."""
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if rng.random() < 0.5:
        pixels = np.asarray(
            Image.fromarray(pixels)
            .resize((max(1, width // 4), max(1, height // 4)), Image.BOX)
            .resize((width, height), Image.NEAREST)
        )
    return pixels


def test_resize_equals_pillow_byte_for_byte():
    rng = np.random.default_rng(0)
    for case in range(120):
        height, width = (int(v) for v in rng.integers(1, 400, 2))
        pixels = _photo(rng, height, width)
        out_h, out_w = (int(v) for v in rng.integers(1, 260, 2))
        if case % 3 == 0:
            box = (0, 0, width, height)
        else:
            x0, y0 = rng.uniform(0, width * 0.7), rng.uniform(0, height * 0.7)
            box = (x0, y0, rng.uniform(x0 + 0.5, width), rng.uniform(y0 + 0.5, height))
        if case % 5 == 0:
            pixels = pixels[:, ::-1]  # a strided view (a flipped image)
        for filter_ in (Image.BICUBIC, Image.BILINEAR):
            expected = np.asarray(
                Image.fromarray(np.ascontiguousarray(pixels)).resize((out_w, out_h), filter_, box=box)
            )
            got = resample.resize(pixels, (out_h, out_w), box, resample=filter_)
            np.testing.assert_array_equal(got, expected, err_msg=f"{width}x{height} -> {out_w}x{out_h} {box}")


def test_resizing_only_the_support_region_gives_the_whole_images_result():
    """resize reads only `support`'s pixels: a region holding them, placed at its origin, gives the
    same bytes (both pass orders: wide images run horizontally first, tall ones vertically)."""
    rng = np.random.default_rng(6)
    for case in range(60):
        height, width = (int(v) for v in rng.integers(8, 300, 2))
        if case % 3 == 0:
            height = width * 4  # tall: Pillow runs the vertical pass first
        pixels = _photo(rng, height, width)
        out_h, out_w = (int(v) for v in rng.integers(1, 120, 2))
        x0, y0 = rng.uniform(0, width * 0.7), rng.uniform(0, height * 0.7)
        box = (x0, y0, rng.uniform(x0 + 0.5, width), rng.uniform(y0 + 0.5, height))
        whole = resample.resize(pixels, (out_h, out_w), box)
        rx0, ry0, rx1, ry1 = resample.support((height, width), (out_h, out_w), box)
        assert 0 <= rx0 < rx1 <= width and 0 <= ry0 < ry1 <= height
        region = pixels[ry0:ry1, rx0:rx1].copy()
        got = resample.resize(region, (out_h, out_w), box, origin=(rx0, ry0), full_size=(height, width))
        np.testing.assert_array_equal(got, whole, err_msg=f"{width}x{height} -> {out_w}x{out_h} {box}")


def test_jpeg_region_decoding_equals_the_whole_decode():
    from convnext_jax.data.jpeg_region import MARGIN, decode_region

    rng = np.random.default_rng(7)
    for index, data in enumerate(_files(rng)):
        image = open_image(data, "x")
        for reduction in (1, 2, 4, 8):
            whole = image.decode_array(reduction)
            height, width = whole.shape[:2]
            x0, y0 = int(rng.integers(0, width - 1)), int(rng.integers(0, height - 1))
            x1, y1 = int(rng.integers(x0 + 1, width + 1)), int(rng.integers(y0 + 1, height + 1))
            region = (max(0, x0 - MARGIN), max(0, y0 - MARGIN), min(width, x1 + MARGIN), min(height, y1 + MARGIN))
            got = image.decode_region(reduction, region)
            if index % 4 in (2, 3):  # CMYK JPEG, PNG: not for the region decoder
                assert got is None
                continue
            inner = got[y0 - region[1] : y1 - region[1], x0 - region[0] : x1 - region[0]]
            np.testing.assert_array_equal(inner, whole[y0:y1, x0:x1])
    damaged = _files(np.random.default_rng(3))[0]
    assert decode_region(damaged[:2000], 1, (0, 0, 8, 200)) is None  # libjpeg warned: decode whole
    # Truncated below the crop: libjpeg would not notice, so a file without its end marker is decoded whole
    # (where Pillow calls it truncated, as before).
    truncated = open_image(damaged[: len(damaged) * 9 // 10], "cut.jpg")
    assert truncated.decode_region(1, (0, 0, 8, 8)) is None


def test_affine_warp_equals_pillow_byte_for_byte():
    rng = np.random.default_rng(1)
    for case in range(80):
        height, width = (int(v) for v in rng.integers(1, 200, 2))
        pixels = _photo(rng, height, width)
        shift, shear = rng.uniform(-0.5, 0.5, 2) * (width, height), rng.uniform(-0.4, 0.4, 2)
        if case % 4 == 0:  # a rotation
            angle = -math.radians(rng.uniform(-40, 40))
            matrix = (
                math.cos(angle),
                math.sin(angle),
                rng.uniform(-30, 30),
                -math.sin(angle),
                math.cos(angle),
                rng.uniform(-30, 30),
            )
        elif case % 4 == 1:  # shear X / translate X: samples on pixel rows
            matrix = (1, shear[0], shift[0], 0, 1, 0)
        elif case % 4 == 2:  # shear Y / translate Y: samples on pixel columns
            matrix = (1, 0, 0, shear[1], 1, shift[1])
        else:
            matrix = (1, shear[0], shift[0], shear[1], 1, shift[1])
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        expected = np.asarray(
            Image.fromarray(pixels).transform(
                (width, height), Image.AFFINE, matrix, resample=Image.BICUBIC, fillcolor=fill
            )
        )
        np.testing.assert_array_equal(resample.affine(pixels, matrix, fill), expected, err_msg=f"{matrix}")


def test_colour_contrast_brightness_equal_pillow_byte_for_byte():
    from PIL import ImageEnhance

    rng = np.random.default_rng(8)
    for case in range(60):
        height, width = (int(v) for v in rng.integers(1, 90, 2))
        pixels = _photo(rng, height, width)
        if case % 5 == 0:
            pixels = np.full_like(pixels, rng.integers(0, 256))  # flat: interpolation lands on integers
        factor = float(rng.choice([rng.uniform(0, 2.5), 0.1, 0.19, 1.0, 1.81, 0.0]))  # both Blend.c branches
        for kind in ("Brightness", "Color", "Contrast"):
            expected = np.asarray(getattr(ImageEnhance, kind)(Image.fromarray(pixels)).enhance(factor))
            np.testing.assert_array_equal(resample.enhance(pixels, kind, factor), expected, err_msg=f"{kind} {factor}")


def test_rotation_matrix_is_pillows_rotate():
    rng = np.random.default_rng(2)
    pixels = _photo(rng, 48, 64)
    for angle in (27.3, -27.3, 9.0, 300.0, 90.0):
        expected = np.asarray(Image.fromarray(pixels).rotate(angle, resample=Image.BICUBIC, fillcolor=(1, 2, 3)))
        got = resample.affine(pixels, rotation_matrix(angle, 64, 48), (1, 2, 3))
        np.testing.assert_array_equal(got, expected)
    assert rotation_matrix(0.0, 64, 48) is None and rotation_matrix(180.0, 64, 48) is None
    assert rotation_matrix(90.0, 32, 32) is None  # Pillow transposes these


def _encoded(pixels, fmt, **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _files(rng):
    """Colour, greyscale and CMYK JPEGs, a PNG, of several sizes."""
    files = []
    for index in range(12):
        height, width = (int(v) for v in rng.integers(180, 420, 2))
        pixels = _photo(rng, height, width)
        if index % 4 == 1:
            files.append(_encoded(pixels[..., 0], "JPEG", quality=85))
        elif index % 4 == 2:
            buffer = io.BytesIO()
            Image.fromarray(pixels).convert("CMYK").save(buffer, format="JPEG")
            files.append(buffer.getvalue())
        elif index % 4 == 3:
            files.append(_encoded(pixels, "PNG"))
        else:
            files.append(_encoded(pixels, "JPEG", quality=int(rng.integers(75, 96))))
    return files


def test_encoded_images_decode_as_pillow_does_at_every_scale():
    from convnext_jax.data.images import decode

    for data in _files(np.random.default_rng(3)):
        image = open_image(data, "x")
        with Image.open(io.BytesIO(data)) as pil:
            assert image.size == pil.size and image.format == pil.format
        for reduction in (1, 2, 4, 8):
            pil = Image.open(io.BytesIO(data))
            pil.info["source_name"] = "x"
            expected = np.asarray(decode(pil, reduction))
            np.testing.assert_array_equal(image.decode_array(reduction), expected)
    truncated = open_image(_files(np.random.default_rng(3))[0][:2000], "cut.jpg")  # the header is intact
    with pytest.raises(BadImageError, match="cut.jpg"):
        truncated.decode_array()
    with pytest.raises(BadImageError, match="junk.jpg"):
        open_image(b"\xff\xd8 not a jpeg at all", "junk.jpg")


def test_a_decompression_bomb_is_refused_as_pillow_refuses_it(monkeypatch):
    data = _encoded(np.zeros((64, 64, 3), np.uint8), "JPEG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels > 2x the limit
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))
    with pytest.raises(BadImageError, match="bomb.jpg.*decompression-bomb"):
        open_image(data, "bomb.jpg")


@pytest.mark.parametrize("training", [True, False])
def test_native_and_pillow_transforms_give_the_same_arrays(training):
    from convnext_jax.data.images import open_image as open_

    rng = np.random.default_rng(4)
    files = _files(rng)
    outputs = {}
    for image_ops in ("native", "pil"):
        ops = (
            train_transforms(64, auto_augment="rand-m9-mstd0.5-inc1-mmax9", image_ops=image_ops)
            if training
            else eval_transforms(64, image_ops=image_ops)
        )
        draws, arrays = np.random.default_rng(5), []
        for _ in range(6):  # every RandAugment op several times
            for index, data in enumerate(files):
                record = {"image": open_(data, f"{index}"), "label": 0}
                for op in ops:
                    record = apply_op(op, record, draws)
                arrays.append(record["image"])
        outputs[image_ops] = arrays
    for got, expected in zip(outputs["native"], outputs["pil"]):
        assert got.dtype == np.uint8 and got.shape == (64, 64, 3)
        np.testing.assert_array_equal(got, expected)


def test_image_ops_native_without_a_compiler_is_a_clear_error(monkeypatch):
    from convnext_jax.errors import ConfigError

    monkeypatch.setattr(resample, "native_library", lambda: None)
    with pytest.raises(ConfigError, match="data.image_ops='native'.*cannot be built"):
        resample.use_native("native")
    assert resample.use_native("auto") is False and resample.use_native("pil") is False
    with pytest.raises(ConfigError, match="must be one of"):
        resample.use_native("opencv")
