"""Masked-image pre-training as a task: the model's loss, the masked-patch val loss over valid
images with a fixed mask, the reconstruction picture."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convnext_jax as cj
from convnext_jax.train.tasks import MaskedImageModeling

SMALL = dict(depths=(1, 1, 1, 1), dims=(16, 24, 32, 48))


@pytest.fixture(scope="module")
def model():
    return cj.create_fcmae("convnextv2_atto", decoder_dim=16, init="convnext", **SMALL)


def test_loss_and_eval_sums(model):
    task = MaskedImageModeling()
    images = jax.random.normal(jax.random.key(0), (4, 64, 64, 3))
    loss, metrics = task.loss(model, {"image": images, "label": jnp.zeros(4, jnp.int32)}, jax.random.key(1))
    assert np.isfinite(float(loss)) and metrics == {}
    valid = jnp.array([1.0, 1.0, 1.0, 0.0])  # the last one is padding
    sums = jax.device_get(task.eval_sums(model, {"image": images, "mask": valid}))
    assert sums["count"] == 3 and sums["patches"] == 3 * 3  # 3 of 4 patches removed per image
    again = jax.device_get(task.eval_sums(model, {"image": images, "mask": valid}))
    assert again["loss"] == sums["loss"]  # the same masks every evaluation
    metrics = task.eval_metrics(sums)
    assert metrics["val_loss"] == pytest.approx(sums["loss"] / 9) and metrics["val_count"] == 3
    assert task.best_metric == "val_loss" and task.best_mode == "min"


def test_picture_grid(model):
    task = MaskedImageModeling(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    images = jax.random.uniform(jax.random.key(2), (3, 64, 96, 3), minval=-1.0, maxval=1.0)
    columns = jax.jit(lambda imgs: task.picture_columns(model, imgs))(images)
    grid = task.picture_grid(jax.device_get(columns))
    assert grid.shape == (14 + 3 * 64, 4 * 96, 3) and grid.dtype == np.uint8
    header, grid = grid[:14], grid[14:]  # the columns' labels, dark text on white, in every column
    assert all((header[:, 96 * i : 96 * (i + 1)] < 128).any() for i in range(4)) and (header == 255).mean() > 0.7
    original = np.asarray(images[0]) * 0.5 + 0.5
    np.testing.assert_allclose(grid[:64, :96] / 255.0, original, atol=1 / 255)
    pasted = grid[:64, 3 * 96 :]
    masked = np.asarray(columns[1][0])
    kept = np.isclose(masked, np.asarray(images[0]))  # visible pixels are the original's in the pasted column
    np.testing.assert_allclose(pasted[kept] / 255.0, original[kept], atol=1 / 255)
