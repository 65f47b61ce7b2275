"""Robustness and re-labelled sets through TFDS's mock data source: ImageNet-A's 200-class
restriction of the logits, ReaL's label sets (empty sets left out), by `validate` and by
`eval.extra_sets` at the end of training; short errors."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

import convnext_jax as cj
from configs import embedded_digits
from convnext_jax.data.on_device import normalize
from convnext_jax.data.robustness import class_subset
from convnext_jax.errors import ConfigError
from convnext_jax.sweep.space import apply_params
from convnext_jax.train import train_and_evaluate
from convnext_jax.validate import parser, validate
from convnext_jax.weights.directory import save_weights

TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 16, 16), dwconv_impl="lax")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A random 1000-class model, saved, and its logits on 12 fixed 32 px images."""
    model = cj.create_model("convnext_atto", num_classes=1000, rngs=3, **TINY)
    images = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    logits = np.asarray(model(normalize(images, MEAN, STD)))
    directory = tmp_path_factory.mktemp("extra") / "weights"
    save_weights(model, directory)
    return directory, images, logits


def _mock(records):
    return tfds.testing.mock_data(
        policy=tfds.testing.MockPolicy.USE_CODE, as_data_source_fn=lambda *args, **kwargs: records
    )


def _validate(directory, data):
    return validate(
        parser().parse_args(
            [str(directory), "--data", data, "--image_size", "32", "--crop_pct", "1.0", "--batch_size", "8"]
        )
    )


def test_imagenet_a_restricts_the_logits_to_its_200_classes(weights):
    directory, images, logits = weights
    subset = np.asarray(class_subset("imagenet_a"))
    restricted = subset[logits[:, subset].argmax(-1)]
    labels = np.where(np.arange(12) < 6, restricted, subset[(np.searchsorted(subset, restricted) + 1) % 200])
    assert (logits.argmax(-1) != restricted).sum() >= 3  # without the restriction these would not count
    with _mock([{"image": image, "label": int(label)} for image, label in zip(images, labels)]):
        row = _validate(directory, "tfds:imagenet_a")
    assert row["top1"] == pytest.approx(50.0) and row["count"] == 12 and row["data"] == "tfds:imagenet_a test"


def test_real_counts_a_prediction_in_the_label_set_and_leaves_out_images_without_labels(weights):
    directory, images, logits = weights
    predicted = logits.argmax(-1)
    sets = []
    for i, prediction in enumerate(predicted):
        other = (int(prediction) + 1) % 1000
        sets.append([] if i % 4 == 3 else [other, int(prediction)] if i % 2 == 0 else [other])
    records = [
        {"image": image, "original_label": int(p), "real_label": np.asarray(s, np.int64), "file_name": b""}
        for image, p, s in zip(images, predicted, sets)
    ]
    with _mock(records):
        row = _validate(directory, "tfds:imagenet2012_real")
    hits, counted = sum(1 for i in range(12) if i % 2 == 0 and i % 4 != 3), sum(1 for i in range(12) if i % 4 != 3)
    assert row["count"] == counted and row["top1"] == pytest.approx(100.0 * hits / counted, abs=1e-3)


def _synthetic_config(**overrides):
    base = {
        "data.source": "synthetic",
        "data.image_size": 32,
        "model.name": "convnext_atto",
        "model.dims": (8, 16, 16, 16),
        "model.depths": (1, 1, 1, 1),
        "model.num_classes": 1000,
        "num_epochs": 1,
        "batch_size": 128,
        "data.augment.mixup_alpha": 0.0,
        "data.augment.cutmix_alpha": 0.0,
    }
    return apply_params(embedded_digits.get_config(), {**base, **overrides})


def test_extra_sets_are_evaluated_at_the_end_of_training(tmp_path, weights):
    _, images, _ = weights
    records = [{"image": image, "label": i * 7} for i, image in enumerate(images)]
    with _mock(records):
        summary = train_and_evaluate(
            _synthetic_config(**{"eval.extra_sets": ("imagenet_v2", "imagenet_r"), "ema_decay": 0.5}), str(tmp_path)
        )
    for name in ("imagenet_v2", "imagenet_r"):
        assert 0.0 <= summary[f"final_{name}_top1"] <= summary[f"final_{name}_top5"] <= 1.0
        assert summary[f"final_{name}_count"] == 12 and f"final_{name}_top1_ema" in summary


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"eval.extra_sets": ("imagenet_z",)}, "unknown set"),
        (
            {"eval.extra_sets": ("imagenet_a",), "data.source": "embedded:digits", "model.num_classes": 0},
            "ImageNet-1k benchmarks, but the model has 10 classes",
        ),
        ({"eval.extra_sets": ("imagenet_sketch",), "data.data_dir": "/nonexistent/tfds"}, "tfds build imagenet_sketch"),
    ],
)
def test_extra_set_mistakes_are_clear_errors_before_training(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train_and_evaluate(_synthetic_config(**overrides), str(tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()
