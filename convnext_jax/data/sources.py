"""Random-access data sources (grain protocol: __len__ and __getitem__ -> record dict).

Every source yields records {"image": (H, W, 3) uint8, "label": int}, and is picklable so
grain worker processes can use it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import numpy as np
from PIL import Image

from convnext_jax.data.images import IMAGE_EXTENSIONS, BadImageError, open_image
from convnext_jax.errors import DataError, DataNotFoundError

log = logging.getLogger(__name__)

SOURCE_KINDS = ("embedded:digits", "synthetic", "folder:<path>", "tfds:<name>", "prepared:<path>")
SKIPPED = "skipped"  # the record field naming unreadable files that were passed over (host-side only)


class DigitsSource:
    """scikit-learn's handwritten digits (1,797 real 8x8 scans, 10 classes), shipped with the package.

    Split deterministically (stratified, fixed seed) into 80% train / 20% val; images are
    upscaled to `image_size` (nearest neighbour keeps the strokes sharp) and made RGB.
    """

    num_classes = 10

    def __init__(self, split: str, image_size: int = 32):
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        if split not in ("train", "val"):
            raise DataError(f"embedded:digits has splits 'train' and 'val', got {split!r}")
        digits = load_digits()
        images = (digits.images / 16.0 * 255.0).round().astype(np.uint8)
        indices = np.arange(len(images))
        train_idx, val_idx = train_test_split(indices, test_size=0.2, random_state=0, stratify=digits.target)
        chosen = np.sort(train_idx if split == "train" else val_idx)
        scale = max(1, -(-image_size // 8))
        upscaled = images[chosen].repeat(scale, axis=1).repeat(scale, axis=2)[:, :image_size, :image_size]
        self._images = np.repeat(upscaled[..., None], 3, axis=-1)
        self._labels = digits.target[chosen].astype(np.int32)
        self._description = f"DigitsSource(split={split!r}, image_size={image_size})"

    def __repr__(self) -> str:  # stable: grain records it in iterator checkpoints
        return self._description

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self._images[index], "label": int(self._labels[index])}


@dataclasses.dataclass(frozen=True)
class SyntheticSource:
    """Deterministic random images (a function of the index), for benchmarks and tests."""

    num_examples: int = 1024
    image_size: int = 224
    num_classes: int = 1000
    seed: int = 0

    def __len__(self) -> int:
        return self.num_examples

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng((self.seed, int(index)))
        image = rng.integers(0, 256, (self.image_size, self.image_size, 3), dtype=np.uint8)
        return {"image": image, "label": int(rng.integers(self.num_classes))}


class ImageFolderSource:
    """`root/<class>/<image>` directories (torchvision ImageFolder layout), read with PIL.

    Classes are the sorted subfolder names, or `class_names` (e.g. the train split's, so that
    val labels agree). Empty class folders and non-image files are reported. An undecodable image
    (bad header or bad pixels) is replaced by the pipeline (`Examples`) with the next readable one
    and named in the record's "skipped" field (`on_bad_image="skip"`; training warns once per file
    and counts them in summary.json), or stops it with BadImageError naming the file (`"error"`).
    """

    def __init__(self, root: str | os.PathLike, *, class_names: list[str] | None = None, on_bad_image: str = "skip"):
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise DataNotFoundError(f"image folder {root!r} does not exist: expected {root}/<class>/<image files>")
        if on_bad_image not in ("skip", "error"):
            raise ValueError(f"on_bad_image must be 'skip' or 'error', got {on_bad_image!r}")
        found = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
        if not found:
            raise DataError(f"{root} has no class subfolders: expected {root}/<class>/<image files>")
        if class_names is None:
            class_names = found
        else:
            extra = sorted(set(found) - set(class_names))
            if extra:
                raise DataError(
                    f"{root} has classes that the training split does not: {extra}. "
                    "Train and val must use the same class folders."
                )
            missing = sorted(set(class_names) - set(found))
            if missing:
                log.warning("%s has no folder for %d training classes: %s", root, len(missing), missing[:10])
        self.root, self.class_names, self.on_bad_image = root, list(class_names), on_bad_image
        self.samples: list[tuple[str, int]] = []
        empty, skipped_files = [], 0
        for label, name in enumerate(self.class_names):
            folder = os.path.join(root, name)
            if not os.path.isdir(folder):
                continue
            files = []
            for dirpath, _, filenames in os.walk(folder, followlinks=True):
                for filename in sorted(filenames):
                    if filename.lower().endswith(IMAGE_EXTENSIONS):
                        files.append(os.path.join(dirpath, filename))
                    elif not filename.startswith("."):
                        skipped_files += 1
            if not files:
                empty.append(name)
            self.samples += [(path, label) for path in sorted(files)]
        if empty:
            log.warning(
                "%s: %d class folder(s) without images (kept as labels, no samples): %s", root, len(empty), empty[:10]
            )
        if skipped_files:
            log.warning("%s: ignored %d file(s) without an image extension %s", root, skipped_files, IMAGE_EXTENSIONS)
        if not self.samples:
            raise DataError(f"{root} contains no image files ({', '.join(IMAGE_EXTENSIONS)})")

    def __repr__(self) -> str:
        return f"ImageFolderSource(root={self.root!r}, num_classes={self.num_classes}, samples={len(self.samples)})"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """{"image", "label"}: the image is opened lazily (its header is read; the pixels are decoded
        by the first transform, at a reduced scale when the crop allows). BadImageError names a file
        that cannot be read; the pipeline (`Examples`) skips it or stops, as `on_bad_image` says."""
        path, label = self.samples[index]
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise BadImageError(f"cannot read image {path}: {e}", path) from e
        return {"image": open_image(data, path), "label": label}


class TfdsSource:
    """A TFDS dataset prepared under `data_dir` (ArrayRecord), read with `tfds.data_source`.

    Images are read as their stored bytes (TFDS's SkipDecoding) and decoded lazily by the pipeline,
    like image files: a RandomResizedCrop then decodes a JPEG at a reduced DCT scale when the crop
    allows (`images.reduction_for`) instead of TFDS decoding every image at full size. Nothing is
    downloaded: a missing dataset raises FileNotFoundError explaining how to prepare it.
    """

    def __init__(
        self, name: str, split: str, data_dir: str | None = None, image_key: str = "image", label_key: str = "label"
    ):
        import tensorflow_datasets as tfds

        try:
            builder = tfds.builder(name, data_dir=data_dir)
        except Exception as e:  # unknown name: tfds lists close matches in its message
            raise DataError(f"unknown TFDS dataset {name!r}: {_first_line(e)}") from e
        splits = list(builder.info.splits)  # empty until the dataset is prepared
        if split == "val":  # our name for the held-out split: TFDS calls it validation or test
            split = next((s for s in ("validation", "test") if s in splits), "validation" if not splits else split)
        if splits and split.split("[")[0] not in splits:
            raise DataError(f"TFDS dataset {name!r} has splits {splits}, not {split!r}")
        try:
            self._source = tfds.data_source(
                name, split=split, data_dir=data_dir, download=False, decoders={image_key: tfds.decode.SkipDecoding()}
            )
        except Exception as e:  # not prepared, or prepared as TFRecord (no random access)
            raise DataNotFoundError(
                f"TFDS dataset {name!r} split {split!r} cannot be opened from {builder.data_dir!r} ({_first_line(e)}). "
                f"Prepare it once as ArrayRecord on a machine with the source files: `tfds build {name} "
                f"--data_dir=DIR --file_format=array_record`, then set data_dir=DIR."
            ) from e
        self.num_classes = builder.info.features[label_key].num_classes
        self.image_key, self.label_key = image_key, label_key
        self._description = f"TfdsSource(name={name!r}, split={split!r})"
        self._name = f"tfds:{name}/{split}"

    def __repr__(self) -> str:
        return self._description

    def __len__(self) -> int:
        return len(self._source)

    def record(self, index: int) -> dict[str, Any]:
        """The TFDS record as stored (every feature)."""
        return self._source[index]

    def image_of(self, record: dict[str, Any], index: int) -> Image.Image | np.ndarray:
        """The record's image: its encoded bytes opened lazily (named `tfds:NAME/SPLIT[index]` in
        errors), or an already decoded array as uint8 RGB (grayscale repeated)."""
        value = record[self.image_key]
        if isinstance(value, np.ndarray) and value.dtype.kind in "OS" and value.size == 1:
            value = value.item()  # a scalar bytes array
        if isinstance(value, (bytes, np.bytes_)):
            return open_image(bytes(value), f"{self._name}[{index}]")
        image = np.asarray(value, dtype=np.uint8)
        if image.ndim == 2 or image.shape[-1] == 1:
            image = np.repeat(image.reshape(image.shape[:2] + (1,)), 3, axis=-1)
        return image

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self._source[index]
        return {"image": self.image_of(record, index), "label": int(record[self.label_key])}


def make_source(
    spec: str,
    split: str,
    *,
    data_dir: str | None = None,
    image_size: int = 224,
    class_names: list[str] | None = None,
    **options: Any,
) -> Any:
    """Build a source from `config.data.source`: 'embedded:digits', 'synthetic', 'folder:/path', 'tfds:name',
    'prepared:/path' (made by `python -m convnext_jax.data.prepare`).

    For folders, `split` is the subfolder (`/path/train`, `/path/val`).
    """
    kind, _, arg = spec.partition(":")
    if kind == "embedded" and arg == "digits":
        return DigitsSource(split, image_size=image_size)
    if kind == "synthetic":
        return SyntheticSource(image_size=image_size, seed=0 if split == "train" else 1, **options)
    if kind == "folder" and arg:
        root = os.path.join(os.path.expanduser(arg), split)
        return ImageFolderSource(root, class_names=class_names, **options)
    if kind == "tfds" and arg:
        return TfdsSource(arg, split, data_dir=data_dir, **options)
    if kind == "prepared" and arg:
        from convnext_jax.data.prepared import PreparedSource

        return PreparedSource(os.path.expanduser(arg), split)
    raise DataError(f"unknown data source {spec!r}; expected one of {', '.join(SOURCE_KINDS)}")


def _first_line(error: Exception) -> str:
    """The first line of a library's (often many-line) message."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
