"""Input-pipeline throughput: grain (convnext_jax.data) vs torchvision DataLoader, same transforms.

Builds an ImageFolder of JPEGs (natural-looking gradients + noise, 500x375 like ImageNet's
median) in a temp dir, then times one pass of each pipeline with timm's training transform
(RandomResizedCrop 224 bicubic, flip, rand-m9-mstd0.5-inc1 capped at magnitude 9, normalise,
random erasing 0.25).

    python scripts/bench_data.py --images 512 --workers 2 --batch-size 32
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from PIL import Image

from convnext_jax.bench.timing import markdown_table

# mmax9: timm's posterize at magnitude 10 asks Pillow for 0 bits, which Pillow >= 11 rejects
# (the torchvision workers crash); capping magnitudes at 9 (timm takes an integer) keeps both pipelines identical and running.
AUTO_AUGMENT = "rand-m9-mstd0.5-inc1-mmax9"


def make_folder(root: str, count: int, classes: int = 8) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:375, 0:500]
    for i in range(count):
        folder = os.path.join(root, f"class_{i % classes}")
        os.makedirs(folder, exist_ok=True)
        base = np.stack([(xx * (i % 7 + 1)) % 256, (yy * (i % 5 + 1)) % 256, (xx + yy) % 256], -1)
        image = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)


def time_grain(root: str, batch_size: int, workers: int, image_size: int) -> float:
    from convnext_jax.data import ImageFolderSource, create_loader, train_transforms

    source = ImageFolderSource(root)
    loader = create_loader(source, batch_size=batch_size, shuffle=True, seed=0, num_epochs=2, worker_count=workers,
                           transforms=train_transforms(image_size, auto_augment=AUTO_AUGMENT, re_prob=0.25))
    iterator = iter(loader)
    next(iterator)  # start-up (worker processes) not counted
    start, images = time.perf_counter(), 0
    for batch in iterator:
        images += len(batch["label"])
    return images / (time.perf_counter() - start)


def time_torchvision(root: str, batch_size: int, workers: int, image_size: int) -> float:
    import torch
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    transform = create_transform(image_size, is_training=True, auto_augment=AUTO_AUGMENT, re_prob=0.25,
                                 interpolation="bicubic")
    dataset = ImageFolder(root, transform=transform)
    sampler = torch.utils.data.RandomSampler(dataset, num_samples=2 * len(dataset))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                         drop_last=True, persistent_workers=workers > 0)
    iterator = iter(loader)
    next(iterator)
    start, images = time.perf_counter(), 0
    for images_batch, _ in iterator:
        images += len(images_batch)
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        make_folder(root, args.images)
        rows = [{"pipeline": "grain (convnext_jax.data)", "workers": workers,
                 "img_per_s": time_grain(root, args.batch_size, workers, args.image_size)}
                for workers in (0, args.workers)]
        rows.append({"pipeline": "torchvision DataLoader + timm transform", "workers": args.workers,
                     "img_per_s": time_torchvision(root, args.batch_size, args.workers, args.image_size)})
    print(f"\n{args.images} JPEGs 500x375, {args.image_size}px train transforms, batch {args.batch_size}, "
          f"{args.workers} workers, 2 epochs\n")
    print(markdown_table(rows, ["pipeline", "workers", "img_per_s"]))
    print("\n(grain with 0 workers reads and decodes on 8 threads in the main process)")


if __name__ == "__main__":
    main()
