"""Mixup/cutmix on the device and smoothed targets follow timm's semantics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convnext_jax.data.mixup import MixupCutmix, smooth_one_hot


def _batch(n=8, size=16, classes=5):
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.standard_normal((n, size, size, 3)), jnp.float32), jnp.asarray(rng.integers(0, classes, n))


def test_smooth_one_hot_matches_torch_convention():
    targets = np.asarray(smooth_one_hot(jnp.array([2, 0]), 4, 0.1))
    np.testing.assert_allclose(targets[0], [0.025, 0.025, 0.925, 0.025], rtol=1e-6)
    np.testing.assert_allclose(targets.sum(1), 1.0, rtol=1e-6)


def test_mixup_mixes_images_and_targets_with_the_same_lambda():
    images, labels = _batch()
    out, targets = MixupCutmix(5, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0)(
        images, labels, jax.random.key(1)
    )
    images, flipped, out = np.asarray(images), np.asarray(images)[::-1], np.asarray(out)
    lam = float(np.sum((out - flipped) * (images - flipped)) / np.sum((images - flipped) ** 2))
    assert 0.0 < lam < 1.0
    np.testing.assert_allclose(out, lam * images + (1 - lam) * flipped, atol=1e-5)
    onehot = np.eye(5, dtype=np.float32)[np.asarray(labels)]
    np.testing.assert_allclose(targets, lam * onehot + (1 - lam) * onehot[::-1], atol=1e-5)


def test_cutmix_pastes_a_box_and_corrects_lambda():
    images, labels = _batch()
    for seed in range(4):
        out, targets = MixupCutmix(5, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.1)(
            images, labels, jax.random.key(seed)
        )
        out = np.asarray(out)
        from_flipped = np.all(out == np.asarray(images)[::-1], axis=-1)[0]
        from_self = np.all(out == np.asarray(images), axis=-1)[0]
        assert np.all(from_flipped | from_self)
        lam = 1.0 - from_flipped.mean()
        smooth = np.asarray(smooth_one_hot(labels, 5, 0.1))
        np.testing.assert_allclose(targets, lam * smooth + (1 - lam) * smooth[::-1], atol=1e-6)
        np.testing.assert_allclose(np.asarray(targets).sum(1), 1.0, rtol=1e-6)


def test_mixup_prob_zero_only_smooths_and_odd_batch_is_rejected():
    images, labels = _batch()
    out, targets = MixupCutmix(5, prob=0.0)(images, labels, jax.random.key(0))
    np.testing.assert_array_equal(out, images)
    np.testing.assert_allclose(targets, smooth_one_hot(labels, 5, 0.1))
    with pytest.raises(ValueError, match=r"the batch per device \(\d+\) must be even"):
        MixupCutmix(5)(*_batch(n=7), jax.random.key(0))
