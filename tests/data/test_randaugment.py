"""RandAugment follows timm: its string syntax, the increasing op set and levels, determinism per RNG."""

import numpy as np
import pytest
from PIL import Image, ImageOps

from convnext_jax.data.randaugment import OPS, RandAugment, rand_augment_from_string


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)


def test_parse_timm_string():
    ra = rand_augment_from_string("rand-m9-mstd0.5-inc1")
    assert (ra.num_layers, ra.magnitude, ra.magnitude_std, ra.prob) == (2, 9.0, 0.5, 0.5)
    ra = rand_augment_from_string("rand-m7-n3-mstd0-p1.0-inc1")
    assert (ra.num_layers, ra.magnitude, ra.magnitude_std, ra.prob) == (3, 7.0, 0.0, 1.0)
    for bad in ["original", "rand-m9-foo1", "rand-m9-inc0"]:
        with pytest.raises(ValueError):
            rand_augment_from_string(bad)


def test_the_increasing_op_set_and_its_levels(image):
    assert len(OPS) == 15 and "PosterizeIncreasing" in OPS and "Cutout" not in OPS
    pil = Image.fromarray(image)
    rng = np.random.default_rng(0)
    for name, op in OPS.items():
        out = np.asarray(op(pil, 9.0, rng, (124, 116, 104)))
        assert out.shape == image.shape and out.dtype == np.uint8, name
    np.testing.assert_array_equal(np.asarray(OPS["Invert"](pil, 5, rng, ())), 255 - image)
    # severity increases with magnitude: level 10 solarizes everything (threshold 0), level 0 nothing
    np.testing.assert_array_equal(np.asarray(OPS["SolarizeIncreasing"](pil, 10.0, rng, ())), 255 - image)
    np.testing.assert_array_equal(np.asarray(OPS["SolarizeIncreasing"](pil, 0.0, rng, ())), image)
    # level 10 keeps 0 bits (Pillow itself rejects bits=0; timm relied on older Pillow giving black)
    np.testing.assert_array_equal(np.asarray(OPS["PosterizeIncreasing"](pil, 10.0, rng, ())), np.zeros_like(image))
    np.testing.assert_array_equal(
        np.asarray(OPS["PosterizeIncreasing"](pil, 5.0, rng, ())), np.asarray(ImageOps.posterize(pil, 2))
    )


def test_randaugment_is_deterministic_per_rng_and_prob_zero_is_identity(image):
    ra = RandAugment()
    a = ra.random_map({"image": image}, np.random.default_rng(5))["image"]
    b = ra.random_map({"image": image}, np.random.default_rng(5))["image"]
    np.testing.assert_array_equal(a, b)
    changed = sum(
        not np.array_equal(ra.random_map({"image": image}, np.random.default_rng(s))["image"], image) for s in range(40)
    )
    assert 20 < changed < 40  # two ops at p=0.5 each: ~75% of images change
    off = RandAugment(prob=0.0)
    np.testing.assert_array_equal(off.random_map({"image": image}, np.random.default_rng(1))["image"], image)
