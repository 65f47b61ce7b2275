"""Prepared datasets (the idea behind FFCV): every image re-encoded once as a JPEG no larger than
`max_size` on its longer side, in ArrayRecord shards that grain reads with random access. Decoding
and resizing a 320 px JPEG costs a fraction of a full-size photograph, every epoch.

    python -m convnext_jax.data.prepare folder:/data/imagenet /data/imagenet-320 --max_size 320

then train with `data.source=prepared:/data/imagenet-320`.
"""

from __future__ import annotations

import io
import json
import os
import struct
from typing import Any

import numpy as np
from PIL import Image

from convnext_jax.data.images import EncodedImage, open_image
from convnext_jax.errors import DataError, DataNotFoundError

MANIFEST = "prepared.json"
FORMAT_VERSION = 1
_LABEL = struct.Struct("<i")


def encode_record(label: int, jpeg: bytes) -> bytes:
    return _LABEL.pack(label) + jpeg


def decode_record(record: bytes) -> tuple[int, bytes]:
    return _LABEL.unpack_from(record)[0], record[_LABEL.size :]


def shrink_to_jpeg(
    image: Image.Image | EncodedImage | np.ndarray, max_size: int, quality: int, original: bytes | None = None
) -> bytes:
    """The image as JPEG bytes with its longer side at most `max_size` (antialiased bicubic resize).
    A JPEG that is already small enough is kept byte for byte (no second generation loss)."""
    from convnext_jax.data.images import decode, reduction_for

    width, height = image.size if not isinstance(image, np.ndarray) else (image.shape[1], image.shape[0])
    scale = max_size / max(width, height)
    rgb_jpeg = (
        isinstance(image, EncodedImage)
        and image.is_colour_jpeg()
        or isinstance(image, Image.Image)
        and image.format == "JPEG"
        and image.mode == "RGB"
    )
    if scale >= 1 and original is not None and rgb_jpeg:
        return original
    reduction = 1
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        reduction = reduction_for(image, size)  # DCT-domain downscale first (at least `size`), then an exact resize
    pil = decode(image, reduction)
    if scale < 1:
        pil = pil.resize(size, Image.BICUBIC, reducing_gap=3.0)
    buffer = io.BytesIO()
    pil.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class PreparedSource:
    """A split of a prepared dataset: records {"image": lazily decoded JPEG, "label": int}."""

    def __init__(self, root: str | os.PathLike, split: str):
        root = os.fspath(root)
        manifest_path = os.path.join(root, MANIFEST)
        if not os.path.isfile(manifest_path):
            raise DataNotFoundError(
                f"{root} is not a prepared dataset (no {MANIFEST}); make one with "
                f"`python -m convnext_jax.data.prepare SOURCE {root}`"
            )
        with open(manifest_path) as f:
            manifest = json.load(f)
        if split not in manifest["splits"]:
            raise DataError(f"prepared dataset {root} has splits {sorted(manifest['splits'])}, not {split!r}")
        from array_record.python.array_record_data_source import ArrayRecordDataSource

        self.root, self.split, self.manifest = root, split, manifest
        self.class_names = list(manifest["class_names"])
        self.on_bad_image = "skip"
        self._paths = [os.path.join(root, split, name) for name in manifest["splits"][split]["shards"]]
        self._records = ArrayRecordDataSource(self._paths)

    def __repr__(self) -> str:
        return f"PreparedSource(root={self.root!r}, split={self.split!r})"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        label, jpeg = decode_record(self._records[int(index)])
        return {"image": open_image(jpeg, f"{self.root}/{self.split}#{index}"), "label": label}

    def __getstate__(self) -> dict[str, Any]:  # worker processes reopen the shards
        return {"root": self.root, "split": self.split}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["root"], state["split"])
