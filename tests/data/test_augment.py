"""RandAugment, color jitter, random erasing and mixup/cutmix follow timm's semantics."""

import numpy as np
import pytest
from PIL import Image, ImageOps

from convnext_jax.data import train_transforms
from convnext_jax.data.mixup import MixupCutmix, smooth_one_hot
from convnext_jax.data.randaugment import OPS, RandAugment, rand_augment_from_string
from convnext_jax.data.transforms import ColorJitter, RandomErasing


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
    np.testing.assert_array_equal(np.asarray(OPS["PosterizeIncreasing"](pil, 5.0, rng, ())),
                                  np.asarray(ImageOps.posterize(pil, 2)))


def test_randaugment_is_deterministic_per_rng_and_prob_zero_is_identity(image):
    ra = RandAugment()
    a = ra.random_map({"image": image}, np.random.default_rng(5))["image"]
    b = ra.random_map({"image": image}, np.random.default_rng(5))["image"]
    np.testing.assert_array_equal(a, b)
    changed = sum(not np.array_equal(ra.random_map({"image": image}, np.random.default_rng(s))["image"], image)
                  for s in range(40))
    assert 20 < changed < 40  # two ops at p=0.5 each: ~75% of images change
    off = RandAugment(prob=0.0)
    np.testing.assert_array_equal(off.random_map({"image": image}, np.random.default_rng(1))["image"], image)


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


def test_train_transform_composition():
    names = [type(op).__name__ for op in train_transforms(32, auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25,
                                                          color_jitter=0.4)]
    assert names == ["RandomResizedCrop", "RandomHorizontalFlip", "RandAugment", "Normalize", "RandomErasing"]
    names = [type(op).__name__ for op in train_transforms(32, color_jitter=0.4, hflip=0.0)]
    assert names == ["RandomResizedCrop", "ColorJitter", "Normalize"]


def test_smooth_one_hot_matches_torch_convention():
    targets = smooth_one_hot(np.array([2, 0]), 4, 0.1)
    np.testing.assert_allclose(targets[0], [0.025, 0.025, 0.925, 0.025])
    np.testing.assert_allclose(targets.sum(1), 1.0, rtol=1e-6)


def _batch(n=8, size=16, classes=5):
    rng = np.random.default_rng(0)
    return {"image": rng.standard_normal((n, size, size, 3)).astype(np.float32),
            "label": rng.integers(0, classes, n)}


def test_mixup_mixes_images_and_targets_with_the_same_lambda():
    batch = _batch()
    out = MixupCutmix(5, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0).random_map(
        dict(batch), np.random.default_rng(1))
    images, flipped = batch["image"], batch["image"][::-1]
    lam = float(np.sum((out["image"] - flipped) * (images - flipped)) / np.sum((images - flipped) ** 2))
    np.testing.assert_allclose(out["image"], lam * images + (1 - lam) * flipped, atol=1e-5)
    onehot = np.eye(5, dtype=np.float32)[batch["label"]]
    np.testing.assert_allclose(out["label"], lam * onehot + (1 - lam) * onehot[::-1], atol=1e-5)


def test_cutmix_pastes_a_box_and_corrects_lambda():
    batch = _batch()
    out = MixupCutmix(5, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.1).random_map(
        dict(batch), np.random.default_rng(4))
    from_flipped = np.all(out["image"] == batch["image"][::-1], axis=-1)[0]
    from_self = np.all(out["image"] == batch["image"], axis=-1)[0]
    assert np.all(from_flipped | from_self)
    lam = 1.0 - from_flipped.mean()
    targets = smooth_one_hot(batch["label"], 5, 0.1)
    np.testing.assert_allclose(out["label"], lam * targets + (1 - lam) * targets[::-1], atol=1e-6)
    np.testing.assert_allclose(out["label"].sum(1), 1.0, rtol=1e-6)


def test_mixup_prob_zero_only_smooths_and_odd_batch_is_rejected():
    batch = _batch()
    out = MixupCutmix(5, prob=0.0).random_map(dict(batch), np.random.default_rng(0))
    np.testing.assert_array_equal(out["image"], batch["image"])
    np.testing.assert_allclose(out["label"], smooth_one_hot(batch["label"], 5, 0.1))
    with pytest.raises(ValueError, match="even batch"):
        MixupCutmix(5).random_map(_batch(n=7), np.random.default_rng(0))
