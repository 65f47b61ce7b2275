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


@pytest.mark.parametrize(
    "smoothing, threshold, sum_classes", [(0.1, 0.0, False), (0.1, 0.2, False), (0.0, 0.0, True), (0.2, 0.05, True)]
)
def test_bce_loss_equals_timms(smoothing, threshold, sum_classes):
    """timm's BinaryCrossEntropy (--bce-loss, --bce-target-thresh, --bce-sum) on integer labels and
    on mixup's soft targets."""
    import torch
    from timm.loss import BinaryCrossEntropy

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 10)).astype(np.float32) * 3
    labels = rng.integers(0, 10, 6)
    task = Classification(
        num_classes=10, label_smoothing=smoothing, loss_kind="bce", bce_target_threshold=threshold, bce_sum=sum_classes
    )
    reference = BinaryCrossEntropy(smoothing=smoothing, target_threshold=threshold or None, sum_classes=sum_classes)
    loss, _ = task.loss(Logits(logits), {"image": None, "label": jnp.asarray(labels)}, jax.random.key(0))
    want = reference(torch.from_numpy(logits), torch.from_numpy(labels))
    assert float(loss) == pytest.approx(float(want), rel=1e-5)
    soft = rng.dirichlet(np.ones(10), 6).astype(np.float32)  # mixup targets pass through (smoothed upstream)
    loss, _ = task.loss(Logits(logits), {"image": None, "label": jnp.asarray(soft)}, jax.random.key(0))
    want = BinaryCrossEntropy(target_threshold=threshold or None, sum_classes=sum_classes)(
        torch.from_numpy(logits), torch.from_numpy(soft)
    )
    assert float(loss) == pytest.approx(float(want), rel=1e-5)
