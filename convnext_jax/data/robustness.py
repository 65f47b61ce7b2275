"""ImageNet robustness and re-labelled evaluation sets from TFDS, scored as the papers do:

    imagenet_v2        ImageNet-V2 (matched-frequency), 1000 classes
    imagenet_sketch    ImageNet-Sketch, 1000 classes
    imagenet_a         ImageNet-A: 200 classes; the logits are restricted to their ImageNet-1k indices
    imagenet_r         ImageNet-R: 200 classes, likewise
    imagenet2012_real  ImageNet ReaL: a prediction is right when it is in the image's label set;
                       images without labels are left out

Each is a TFDS dataset prepared as ArrayRecord under data_dir (nothing is downloaded). Use them
in `eval.extra_sets` (evaluated at the end of training) or `python -m convnext_jax.validate
--data tfds:imagenet_a`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import numpy as np

IMAGENET_CLASSES = 1000


@dataclasses.dataclass(frozen=True)
class ExtraSet:
    tfds_name: str
    split: str
    subset_file: str = ""  # the ImageNet-1k indices its classes are, one per line ('' = all 1000)
    multi_label: bool = False  # ReaL: `real_label` holds the set of right answers


EXTRA_SETS = {
    "imagenet_v2": ExtraSet("imagenet_v2", "test"),
    "imagenet_sketch": ExtraSet("imagenet_sketch", "test"),
    "imagenet_a": ExtraSet("imagenet_a", "test", subset_file="imagenet_a_indices.txt"),
    "imagenet_r": ExtraSet("imagenet_r", "test", subset_file="imagenet_r_indices.txt"),
    "imagenet2012_real": ExtraSet("imagenet2012_real", "validation", multi_label=True),
}


def extra_set_of(spec: str) -> tuple[str, ExtraSet] | None:
    """('imagenet_a', its ExtraSet) for 'imagenet_a' or 'tfds:imagenet_a' (a config suffix such as
    'imagenet_v2/matched-frequency' keeps the set), else None."""
    name = spec.removeprefix("tfds:")
    base = name.split("/")[0].split(":")[0]
    return (name, EXTRA_SETS[base]) if base in EXTRA_SETS else None


@functools.cache
def class_subset(name: str) -> tuple[int, ...]:
    """The ImageNet-1k indices of set `name`'s classes (() for sets with all 1000)."""
    subset_file = EXTRA_SETS[name].subset_file
    if not subset_file:
        return ()
    with open(os.path.join(os.path.dirname(__file__), "imagenet_info", subset_file)) as f:
        return tuple(int(line) for line in f if line.strip())


def eval_classes_of(spec: str) -> tuple[int, ...]:
    """The ImageNet-1k indices the logits of data source `spec` are restricted to at evaluation
    (ImageNet-A/-R's 200), or () for every class."""
    found = extra_set_of(spec)
    return class_subset(found[1].tfds_name) if found else ()


class MultiLabelTfdsSource:
    """ImageNet ReaL: records with the original label (`label`) and the multi-hot set of right
    answers (`label_set`, uint8 [1000]; all zero when the image has none)."""

    def __init__(self, name: str, split: str, data_dir: str | None):
        from convnext_jax.data.sources import TfdsSource

        self._inner = TfdsSource(name, split, data_dir=data_dir, label_key="original_label")
        self.num_classes = IMAGENET_CLASSES

    def __len__(self) -> int:
        return len(self._inner)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self._inner.record(index)
        image = self._inner.image_of(record, index)
        label_set = np.zeros(IMAGENET_CLASSES, np.uint8)
        label_set[np.asarray(record["real_label"], np.int64).reshape(-1)] = 1
        return {"image": image, "label": int(record["original_label"]), "label_set": label_set}


def extra_set_source(spec: str, data_dir: str | None) -> Any:
    """The source of an extra set (`spec`: a name of EXTRA_SETS, with or without 'tfds:')."""
    from convnext_jax.data.sources import TfdsSource

    name, extra = extra_set_of(spec)
    tfds_name = extra.tfds_name if name == extra.tfds_name else name
    if extra.multi_label:
        return MultiLabelTfdsSource(tfds_name, extra.split, data_dir)
    return TfdsSource(tfds_name, extra.split, data_dir=data_dir)
