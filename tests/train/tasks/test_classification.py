"""Classification: smoothed cross-entropy and accuracy in train mode, masked sums in evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from convnext_jax.train.tasks import Classification


class Logits:
    """A stand-in model returning fixed logits (the task only calls the model)."""

    def __init__(self, logits):
        self.logits = jnp.asarray(logits, jnp.float32)

    def __call__(self, images, train=False, rng=None):
        return self.logits


def test_loss_is_smoothed_cross_entropy_and_soft_targets_pass_through():
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    task = Classification(num_classes=3, label_smoothing=0.1)
    loss, metrics = task.loss(Logits(logits), {"image": None, "label": jnp.array([0, 1])}, jax.random.key(0))
    targets = optax.smooth_labels(jax.nn.one_hot(jnp.array([0, 1]), 3), 0.1)
    assert float(loss) == pytest.approx(float(optax.softmax_cross_entropy(logits, targets).mean()), rel=1e-6)
    assert float(metrics["accuracy"]) == 0.5
    soft = jnp.array([[0.7, 0.3, 0.0], [0.0, 0.0, 1.0]])  # mixup targets: used as they are
    loss, metrics = task.loss(Logits(logits), {"image": None, "label": soft}, jax.random.key(0))
    assert float(loss) == pytest.approx(float(optax.softmax_cross_entropy(logits, soft).mean()), rel=1e-6)
    assert float(metrics["accuracy"]) == 1.0


def test_eval_sums_count_only_unmasked_examples():
    logits = np.eye(6)[[0, 1, 2, 3]] * 5.0 - np.eye(6)[[5, 5, 5, 5]]  # predicts 0, 1, 2, 3; class 5 always last
    task = Classification(num_classes=6)
    batch = {"image": None, "label": jnp.array([0, 5, 2, 1]), "mask": jnp.array([1.0, 1.0, 1.0, 0.0])}
    sums = jax.device_get(task.eval_sums(Logits(logits), batch))
    assert sums["count"] == 3 and sums["top1"] == 2 and sums["top5"] == 2  # class 5 is outside the top 5 of 6
    metrics = task.eval_metrics(sums)
    assert metrics["val_top1"] == pytest.approx(2 / 3) and metrics["val_count"] == 3
    assert task.best_metric == "val_top1" and task.best_mode == "max"
