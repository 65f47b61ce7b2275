"""Mixup/cutmix and smoothed targets follow timm's semantics."""

import numpy as np
import pytest

from convnext_jax.data.mixup import MixupCutmix, smooth_one_hot


def _batch(n=8, size=16, classes=5):
    rng = np.random.default_rng(0)
    return {"image": rng.standard_normal((n, size, size, 3)).astype(np.float32),
            "label": rng.integers(0, classes, n)}


def test_smooth_one_hot_matches_torch_convention():
    targets = smooth_one_hot(np.array([2, 0]), 4, 0.1)
    np.testing.assert_allclose(targets[0], [0.025, 0.025, 0.925, 0.025])
    np.testing.assert_allclose(targets.sum(1), 1.0, rtol=1e-6)


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
