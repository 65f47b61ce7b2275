"""python -m convnext_jax.data.prepare SOURCE DST [--max_size 320] [--quality 90] [--workers N]

Re-encode a dataset (any `data.source`: folder:/path, tfds:name, embedded:digits) into a prepared
dataset at DST (ArrayRecord shards of JPEGs at most --max_size px on the longer side), for
`data.source=prepared:DST`. Unreadable images are left out and counted.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
import time
from typing import Any

from convnext_jax.cli import ArgumentParser, reports_user_errors
from convnext_jax.data.prepared import FORMAT_VERSION, MANIFEST, encode_record, shrink_to_jpeg
from convnext_jax.errors import UserError

_worker: dict[str, Any] = {}


def _classes(spec: str, class_names: list[str] | None) -> dict[str, Any]:
    """make_source's class_names for an image folder's split (other sources label their own)."""
    return {"class_names": class_names} if class_names is not None and spec.startswith("folder:") else {}


def _open(spec: str, split: str, max_size: int, quality: int, class_names: list[str] | None) -> None:
    import logging

    from convnext_jax.data import make_source

    logging.getLogger("convnext_jax").setLevel(logging.ERROR)  # the parent already said what the source found
    _worker.update(
        source=make_source(spec, split, image_size=max_size, **_classes(spec, class_names)),
        max_size=max_size,
        quality=quality,
    )


def _encode(index: int) -> bytes | None:
    from convnext_jax.data.images import BadImageError

    source = _worker["source"]
    try:
        record = source[index]
        image = record["image"]
        original = image.data if getattr(image, "format", None) == "JPEG" and hasattr(image, "data") else None
        return encode_record(
            int(record["label"]), shrink_to_jpeg(image, _worker["max_size"], _worker["quality"], original)
        )
    except BadImageError:
        return None


def prepare_split(
    spec: str,
    split: str,
    destination: str,
    *,
    max_size: int,
    quality: int,
    workers: int,
    shard_size: int,
    class_names: list[str] | None = None,
) -> dict[str, Any] | None:
    """Write one split's shards; None when the source has no such split. `class_names`: the train
    split's (image folders label val with them, so the labels agree)."""
    from array_record.python.array_record_module import ArrayRecordWriter

    from convnext_jax.data import make_source

    try:
        source = make_source(spec, split, image_size=max_size, **_classes(spec, class_names))
    except (FileNotFoundError, ValueError) as e:
        if split == "train":
            raise UserError(f"cannot read {spec!r} split {split!r}: {e}") from e
        print(f"no {split} split ({e}); skipped", file=sys.stderr)
        return None
    folder = os.path.join(destination, split)
    os.makedirs(folder, exist_ok=True)
    count, skipped, shards, writer = 0, 0, [], None
    began = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_open, initargs=(spec, split, max_size, quality, class_names)) as pool:
        for record in pool.imap(_encode, range(len(source)), chunksize=16):
            if record is None:
                skipped += 1
                continue
            if writer is None or count % shard_size == 0:
                if writer is not None:
                    writer.close()
                shards.append(f"shard-{len(shards):05d}.array_record")
                writer = ArrayRecordWriter(os.path.join(folder, shards[-1]), "group_size:1")
            writer.write(record)
            count += 1
            if count % 5000 == 0:
                print(
                    f"{split}: {count}/{len(source)} images, {count / (time.perf_counter() - began):.0f}/s",
                    file=sys.stderr,
                )
    if writer is not None:
        writer.close()
    print(
        f"{split}: {count} images in {len(shards)} shard(s), {skipped} unreadable left out, "
        f"{time.perf_counter() - began:.1f}s",
        file=sys.stderr,
    )
    return {
        "count": count,
        "skipped": skipped,
        "shards": shards,
        "class_names": list(getattr(source, "class_names", [str(i) for i in range(source.num_classes)])),
    }


@reports_user_errors
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m convnext_jax.data.prepare", description=__doc__)
    parser.add_argument("source", help="folder:/path (with train/ and val/), tfds:NAME or embedded:digits")
    parser.add_argument("destination", help="a new directory")
    parser.add_argument("--max_size", type=int, default=320, help="longer side of the stored JPEGs (px)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of re-encoded images")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--shard_size", type=int, default=10000, help="images per ArrayRecord shard")
    args = parser.parse_args(argv)
    if args.max_size < 16 or not 1 <= args.quality <= 100 or args.workers < 1 or args.shard_size < 1:
        raise UserError("--max_size must be >= 16, --quality in 1..100, --workers and --shard_size >= 1")
    destination = os.path.expanduser(args.destination)
    if os.path.exists(os.path.join(destination, MANIFEST)):
        raise UserError(f"{destination} already holds a prepared dataset; choose a new directory or delete it")
    if os.path.isdir(destination) and os.listdir(destination):
        raise UserError(f"{destination} is not empty; choose a new directory")
    created = not os.path.isdir(destination)
    try:
        splits = {}
        for split in ("train", "val"):
            done = prepare_split(
                args.source,
                split,
                destination,
                max_size=args.max_size,
                quality=args.quality,
                workers=args.workers,
                shard_size=args.shard_size,
                class_names=splits["train"]["class_names"] if "train" in splits else None,
            )
            if done is not None:
                splits[split] = done
        class_names = splits["train"].pop("class_names")
        for split in splits.values():
            split.pop("class_names", None)
        manifest = {
            "format": FORMAT_VERSION,
            "source": args.source,
            "max_size": args.max_size,
            "quality": args.quality,
            "class_names": class_names,
            "splits": splits,
        }
        with open(os.path.join(destination, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=2)
    except BaseException:
        if created:  # a failed run leaves nothing half-written behind
            shutil.rmtree(destination, ignore_errors=True)
        raise
    print(f"prepared {destination}: use data.source=prepared:{destination}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
