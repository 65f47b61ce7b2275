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


def test_an_unreadable_image_is_left_out_never_replaced_and_one_batch_is_timed(tmp_path):
    """A zero-byte file in a val class folder is left out of every metric (the old pipeline put the
    next image, of another class, in its place), named and counted; a split that fits in one batch
    still gets an img/s."""
    import jax
    from flax import nnx
    from PIL import Image

    import convnext_jax as cj
    from convnext_jax.data import ImageFolderSource, eval_transforms
    from convnext_jax.data.on_device import InputStage
    from convnext_jax.train.evaluate import Evaluation, Evaluator
    from convnext_jax.train.parallel import data_parallel
    from convnext_jax.train.tasks import Classification

    for name, count in (("a", 3), ("b", 2)):
        (tmp_path / name).mkdir()
        for i in range(count):
            Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(tmp_path / name / f"{i}.png")
    (tmp_path / "a" / "9_empty.png").write_bytes(b"")
    source = ImageFolderSource(tmp_path)
    assert len(source) == 6
    model = cj.create_model("convnext_atto", num_classes=2, depths=(1, 1, 1, 1), dims=(8, 8, 8, 8), rngs=0)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    layout = data_parallel([jax.devices()[0]])
    evaluator = Evaluator(
        source,
        eval_transforms(32, crop_pct=1.0),
        graphdef,
        rest,
        Classification(2),
        layout,
        8,
        InputStage(mean=None, std=None),
    )
    result = evaluator(layout.place_state(params))
    assert isinstance(result, Evaluation)
    assert result.metrics["val_count"] == 5 and result.skipped == 1 and result.left_out[0].endswith("9_empty.png")
    assert result.confusion.sum() == 5 and result.confusion[0].sum() == 3  # class a: its 3 readable images
    assert result.images_per_second and result.images_per_second > 0  # was 0.0 for a one-batch split
