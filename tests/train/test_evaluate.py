"""Evaluation batches: the last one is padded with masked examples, so each example counts once."""

import numpy as np

from convnext_jax.train.evaluate import pad_batch


def test_pad_batch_masks_the_padding():
    batch = {"image": np.ones((3, 4, 4, 3), np.float32), "label": np.array([1, 2, 3])}
    padded = pad_batch(batch, 5)
    assert padded["image"].shape == (5, 4, 4, 3) and padded["label"].tolist() == [1, 2, 3, 0, 0]
    assert padded["mask"].tolist() == [1, 1, 1, 0, 0] and not padded["image"][3:].any()
    full = pad_batch(batch, 3)
    assert full["mask"].tolist() == [1, 1, 1] and full["image"] is batch["image"]
    empty = pad_batch({k: v[:0] for k, v in batch.items()}, 2)  # a process whose shard is exhausted
    assert empty["mask"].tolist() == [0, 0] and empty["label"].shape == (2,)
