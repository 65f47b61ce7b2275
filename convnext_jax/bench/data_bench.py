"""Input-pipeline throughput: our grain pipeline vs torchvision DataLoader + timm's transform, side by
side, with timm's ConvNeXt training augmentation (RandomResizedCrop 224 bicubic, flip,
rand-m9-mstd0.5-inc1, random erasing 0.25). Ours leaves the host as uint8 and normalises, mixes
(mixup/cutmix) and erases on the device, in the step (timm's prefetcher normalises and erases on
the GPU too; its DataLoader path, timed here, normalises and erases in the workers).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

# timm's posterize at magnitude 10 asks Pillow for 0 bits, which Pillow >= 11 rejects (the torch
# workers crash); capping magnitudes at 9 keeps both pipelines identical and running.
AUTO_AUGMENT = "rand-m9-mstd0.5-inc1-mmax9"
ASPECTS = (4 / 3, 3 / 4, 1.0, 16 / 9, 3 / 2, 2 / 3)


def make_imagenet_like(root: str, count: int, classes: int = 8, seed: int = 0) -> str:
    """`root/train/<class>/*.jpg`: crops of real photographs (scikit-learn's sample images) resized
    to 400-800 px on the long side in several aspect ratios, JPEG quality 75-95. Returns root."""
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(a) for a in load_sample_images().images]
    rng = np.random.default_rng(seed)
    for i in range(count):
        photo = photos[i % len(photos)]
        width, height = photo.size
        crop_w, crop_h = int(rng.integers(width // 3, width)), int(rng.integers(height // 3, height))
        x, y = int(rng.integers(0, width - crop_w)), int(rng.integers(0, height - crop_h))
        long, aspect = int(rng.integers(400, 801)), ASPECTS[i % len(ASPECTS)]
        size = (long, int(long / aspect)) if aspect >= 1 else (int(long * aspect), long)
        image = photo.crop((x, y, x + crop_w, y + crop_h)).resize(size, Image.BICUBIC)
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        folder = os.path.join(root, "train", f"class_{i % classes}")
        os.makedirs(folder, exist_ok=True)
        image.save(os.path.join(folder, f"{i:05d}.jpg"), quality=int(rng.integers(75, 96)))
    return root


def prepare_copy(spec: str, destination: str, max_size: int, workers: int) -> str:
    """A prepared dataset of `spec` at `destination`, and the same JPEG files as an image folder
    under destination/files (for torchvision). Returns destination."""
    from convnext_jax.data.prepare import main as prepare
    from convnext_jax.data.prepared import PreparedSource, decode_record

    prepare([spec, destination, "--max_size", str(max_size), "--workers", str(workers)])
    source = PreparedSource(destination, "train")
    for index in range(len(source)):
        label, jpeg = decode_record(source._records[index])
        folder = os.path.join(destination, "files", "train", source.class_names[label])
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{index:06d}.jpg"), "wb") as f:
            f.write(jpeg)
    return destination


def our_loader(
    spec: str, *, batch_size: int, workers: int, threads: int, image_size: int, epochs: int, image_ops: str = "auto"
) -> Any:
    from convnext_jax.data import create_loader, make_source, train_transforms

    source = make_source(spec, "train")
    transforms = train_transforms(image_size, auto_augment=AUTO_AUGMENT, image_ops=image_ops)
    return create_loader(
        source,
        batch_size=batch_size,
        shuffle=True,
        seed=0,
        num_epochs=epochs,
        worker_count=workers,
        threads=threads,
        transforms=transforms,
    )


def timm_transform(image_size: int) -> Any:
    from timm.data import create_transform

    return create_transform(
        image_size, is_training=True, auto_augment=AUTO_AUGMENT, re_prob=0.25, interpolation="bicubic"
    )


def torch_loader(root: str, *, batch_size: int, workers: int, image_size: int, epochs: int) -> Any:
    import torch
    from torchvision.datasets import ImageFolder

    dataset = ImageFolder(os.path.join(root, "train"), transform=timm_transform(image_size))
    sampler = torch.utils.data.RandomSampler(dataset, num_samples=epochs * len(dataset))
    # spawned workers: forking a process that runs JAX can deadlock
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
        multiprocessing_context="spawn" if workers > 0 else None,
    )


def images_per_second(loader: Any) -> float:
    """Images per second after the first batch (start-up of worker processes not counted)."""
    from convnext_jax.errors import ConfigError

    iterator = iter(loader)
    if next(iterator, None) is None:
        raise ConfigError(
            "the data source gives no full batch: use fewer workers, a smaller --batch_size or more --epochs"
        )
    start, images = time.perf_counter(), 0
    for batch in iterator:
        images += len(batch["label"] if isinstance(batch, dict) else batch[1])
    return images / (time.perf_counter() - start)


def _time(fn: Callable[[], Any], totals: dict[str, float], name: str) -> Any:
    began = time.perf_counter()
    out = fn()
    totals[name] = totals.get(name, 0.0) + time.perf_counter() - began
    return out


def stage_timings(
    spec: str, root: str | None, *, image_size: int, count: int, batch_size: int, pil_ops: bool = False
) -> list[dict[str, Any]]:
    """Per-image milliseconds of each stage, one thread, ours (and with `pil_ops` ours with Pillow's
    resize/warp, the same pixels) and (with `root`) timm's."""
    import jax

    from convnext_jax.data import make_source, train_transforms
    from convnext_jax.data.pipeline import apply_op

    source = make_source(spec, "train")
    rows = []
    for label, image_ops in [("ours", "auto")] + ([("ours, Pillow resize/warp", "pil")] if pil_ops else []):
        ops = train_transforms(image_size, auto_augment=AUTO_AUGMENT, image_ops=image_ops)
        rng = np.random.default_rng(0)
        ours: dict[str, float] = {}
        arrays = []
        for index in range(count):
            record = _time(lambda: source[index % len(source)], ours, "read (header)")
            for op in ops:
                name = {"RandomResizedCrop": "decode + crop/resize"}.get(type(op).__name__, type(op).__name__)
                record = _time(lambda: apply_op(op, record, rng), ours, name)
            arrays.append(record["image"])
        batches = [arrays[i : i + batch_size] for i in range(0, len(arrays) - batch_size + 1, batch_size)]
        jax.block_until_ready(jax.device_put(np.stack(batches[0])))  # the backend's start-up is not a transfer cost
        for batch in batches:
            stacked = _time(lambda: np.stack(batch), ours, "collate (uint8)")
            _time(lambda: jax.block_until_ready(jax.device_put(stacked)), ours, "host->device (uint8)")
        rows += [{"pipeline": label, "stage": k, "ms_per_image": 1e3 * v / count} for k, v in ours.items()]
    if root is not None:
        import torch
        from torchvision.datasets.folder import default_loader

        paths = [os.path.join(d, f) for d, _, fs in sorted(os.walk(os.path.join(root, "train"))) for f in sorted(fs)]
        theirs: dict[str, float] = {}
        tensors, transform = [], timm_transform(image_size)
        for index in range(count):
            image = _time(lambda: default_loader(paths[index % len(paths)]), theirs, "read + decode")
            for op in transform.transforms:
                image = _time(lambda: op(image), theirs, type(op).__name__)
            tensors.append(image)
        for i in range(0, len(tensors) - batch_size + 1, batch_size):
            stacked = _time(lambda: torch.stack(tensors[i : i + batch_size]), theirs, "collate (float32)")
            _time(lambda: jax.block_until_ready(jax.device_put(stacked.numpy())), theirs, "host->device (float32)")
        rows += [
            {"pipeline": "torchvision + timm", "stage": k, "ms_per_image": 1e3 * v / count} for k, v in theirs.items()
        ]
    return rows
