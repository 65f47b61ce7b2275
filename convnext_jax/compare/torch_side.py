"""The PyTorch side of a comparison: timm's ConvNeXt trained on the recipe of WORKDIR/config.json,
fed by our pipeline (the same augmented batches in the same order as the JAX side) or, with
--batches native, by a DataLoader with timm's transforms, at its best on
the hardware present: CUDA with AMP (bf16 or fp16 per model.dtype; GradScaler for fp16),
channels_last and optionally torch.compile; on CPU fp32. Writes WORKDIR/metrics.jsonl (per step
and per epoch), WORKDIR/resume.pt at every epoch end (an interrupted run goes on from there,
exactly with shared batches: model, optimizer, EMA, RNG streams and the batches' position; with
native batches the epoch's order is re-seeded but the workers' augmentation draws are new) and, when done,
WORKDIR/summary.json (atomically: an interrupted run leaves none).

    python -m convnext_jax.compare.torch_side --workdir DIR [--jax_devices N] [--init shared]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import os
import random
import sys
import time
from typing import Any

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the shared init is built on the CPU: the GPU stays torch's

import numpy as np
import torch

from convnext_jax.data import create_loader
from convnext_jax.data.from_config import eval_transforms_of
from convnext_jax.run_files import METRICS_FILE, SUMMARY_FILE
from convnext_jax.train import setup
from convnext_jax.train.tasks import task_of
from convnext_jax.train.workdir import RunDir
from convnext_jax.weights import export_pytorch_weights

AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
RESUME_FILE = "resume.pt"  # the state at the last epoch end: an interrupted sub-run goes on from there


def _rng_state() -> dict[str, Any]:
    """Every random stream the step draws from: torch (drop path), numpy (timm's Mixup), Python
    (timm's RandomErasing)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None:
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _save_atomically(state: dict[str, Any], path: str) -> None:
    partial = path + ".partial"
    torch.save(state, partial)
    os.replace(partial, path)


class NativeDataset(torch.utils.data.Dataset):
    """One of our sources through timm's transforms (--batches native): PIL images in, normalised
    float CHW tensors out, as a timm user's DataLoader makes them."""

    def __init__(self, source: Any, transform: Any):
        self.source, self.transform = source, transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        example = self.source[index]
        image = example["image"]
        array = image if isinstance(image, np.ndarray) else image.decode_array()
        return self.transform(Image.fromarray(array).convert("RGB")), example["label"]


def native_loader(config: Any, source: Any, *, train: bool) -> torch.utils.data.DataLoader:
    """torchvision's DataLoader with timm's `create_transform` for the recipe (RandomResizedCrop,
    flip, RandAugment, colour jitter and per-image random erasing in training; resize and centre
    crop in evaluation), worker processes as a timm user runs them."""
    from timm.data import create_transform

    aug = config.data.augment
    options = dict(input_size=config.data.image_size, mean=tuple(config.data.mean), std=tuple(config.data.std))
    if train:
        transform = create_transform(
            is_training=True,
            scale=tuple(aug.scale),
            hflip=aug.hflip,
            color_jitter=aug.color_jitter or None,
            auto_augment=aug.auto_augment or None,
            re_prob=aug.re_prob,
            re_mode="pixel",
            interpolation="bicubic",
            **options,
        )
    else:
        transform = create_transform(
            is_training=False, crop_pct=config.data.crop_pct, interpolation="bicubic", **options
        )
    generator = torch.Generator().manual_seed(config.seed)
    return torch.utils.data.DataLoader(
        NativeDataset(source, transform),
        batch_size=config.batch_size,
        shuffle=train,
        drop_last=train,
        num_workers=min(8, os.cpu_count() or 1),
        persistent_workers=train,
        generator=generator,
        multiprocessing_context="spawn",  # JAX's threads are running in this process: forking them is unsafe
    )


def native_batches(loader: torch.utils.data.DataLoader, seed: int, start_epoch: int = 0):
    """Endless (images, labels) batches, epoch after epoch; epoch k's order and augmentation draws
    come from (seed, k), so a run resumed at an epoch boundary reads what it would have read."""
    for epoch in itertools.count(start_epoch):
        loader.generator.manual_seed(seed * 1_000_003 + epoch)
        yield from loader


def torch_model(config: Any, num_classes: int, shared_init: bool) -> torch.nn.Module:
    """timm's ConvNeXt with the JAX model's architecture (and, if `shared_init`, its initial weights)."""
    from timm.models.convnext import ConvNeXt as TimmConvNeXt

    jax_model = task_of(config, num_classes).build_model(config, setup.model_config_of(config, num_classes))
    cfg = jax_model.cfg
    model = TimmConvNeXt(
        depths=cfg.depths,
        dims=cfg.dims,
        use_grn=cfg.use_grn,
        ls_init_value=cfg.ls_init_value,
        conv_mlp=cfg.conv_mlp,
        num_classes=num_classes,
        drop_path_rate=config.model.drop_path_rate,
        drop_rate=config.model.head_drop_rate,
    )
    if shared_init:
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in export_pytorch_weights(jax_model).items()})
    return model


def param_groups(model: torch.nn.Module, optim: Any) -> list[dict[str, Any]]:
    """AdamW groups as the JAX side's: no decay on 1-D parameters; with optim.layer_decay the LR of
    layer i scaled by decay^(L - i) with timm's layer ids."""
    if optim.layer_decay:
        from timm.optim import param_groups_layer_decay

        return param_groups_layer_decay(model, weight_decay=optim.weight_decay, layer_decay=optim.layer_decay)
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": optim.weight_decay}, {"params": rest, "weight_decay": 0.0}]


def images_of(batch: dict[str, np.ndarray], config: Any, device: torch.device) -> torch.Tensor:
    """The loader's uint8 NHWC batch as timm's prefetcher makes it: float NCHW, scaled, normalised
    (channels_last on CUDA)."""
    images = torch.from_numpy(np.ascontiguousarray(batch["image"])).to(device).permute(0, 3, 1, 2).float() / 255.0
    if config.data.normalize:
        mean = torch.tensor(config.data.mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(config.data.std, device=device).view(1, 3, 1, 1)
        images = (images - mean) / std
    return images.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else images.contiguous()


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, val_source: Any, config: Any, device: torch.device, amp: Any, native: bool = False
) -> dict[str, float]:
    model.eval()
    loss = correct = count = 0.0
    if native:
        batches = (
            {"images": images.to(device), "label": labels.long().to(device)}
            for images, labels in native_loader(config, val_source, train=False)
        )
    else:
        batches = (
            {
                "images": images_of(batch, config, device),
                "label": torch.from_numpy(batch["label"]).long().to(device),
                "valid": batch.get("valid"),
            }
            for batch in create_loader(
                val_source,
                batch_size=config.batch_size,
                shuffle=False,
                num_epochs=1,
                drop_remainder=False,
                transforms=eval_transforms_of(config),
            )
        )
    for batch in batches:
        labels = batch["label"]
        valid = batch.get("valid")
        valid = torch.from_numpy(np.asarray(valid if valid is not None else np.ones(len(labels)), bool)).to(device)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            logits = model(batch["images"]).float()
        losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
        loss += float(losses[valid].sum())
        correct += float((logits.argmax(-1) == labels)[valid].sum())
        count += float(valid.sum())
    model.train()
    return {"val_loss": loss / count, "val_top1": correct / count, "val_count": int(count)}


def train(
    workdir: str, *, jax_devices: int = 1, shared_init: bool = True, compile: bool = False, native: bool = False
) -> dict:
    """Train the recipe in WORKDIR/config.json; returns (and writes) the summary. `native`: timm's
    transforms in a DataLoader instead of our pipeline's batches."""
    config = RunDir(workdir).stored_config()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp = AMP_DTYPES.get(config.model.dtype) if device.type == "cuda" else None
    torch.manual_seed(config.seed)  # drop path
    np.random.seed(config.seed)  # timm's Mixup
    random.seed(config.seed)  # timm's RandomErasing
    train_source, val_source = setup.data_sources(config)
    num_classes = config.model.num_classes or train_source.num_classes
    model = torch_model(config, num_classes, shared_init).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model).eval() if config.ema_decay > 0 else None
    forward = torch.compile(model) if compile else model
    optim = config.optim
    optimizer = torch.optim.AdamW(param_groups(model, optim), lr=0.0, betas=(optim.b1, optim.b2), eps=optim.eps)
    scaler = torch.amp.GradScaler("cuda", enabled=amp is torch.float16)
    steps_per_epoch = setup.steps_per_epoch_of(config, len(train_source))
    total = config.num_epochs * steps_per_epoch
    schedule = setup.schedule_of(config, steps_per_epoch)
    accum = optim.grad_accum_steps
    resume_path = os.path.join(workdir, RESUME_FILE)
    saved = torch.load(resume_path, weights_only=False) if os.path.isfile(resume_path) else None
    start = saved["step"] if saved else 0
    if native:
        loader = native_batches(native_loader(config, train_source, train=True), config.seed, start // steps_per_epoch)
    else:
        loader = iter(
            setup.train_loader_of(
                config, train_source, batch_size=config.batch_size, slots_per_process=accum * jax_devices
            )
        )
        if saved:
            loader.set_state(saved["loader"])
    aug = config.data.augment
    mixup = erasing = None
    if aug.mixup_alpha > 0 or aug.cutmix_alpha > 0:  # timm's batch mixup, per micro-batch as our step does
        from timm.data import Mixup

        mixup = Mixup(
            mixup_alpha=aug.mixup_alpha,
            cutmix_alpha=aug.cutmix_alpha,
            prob=aug.mixup_prob,
            switch_prob=aug.mixup_switch_prob,
            label_smoothing=config.label_smoothing,
            num_classes=num_classes,
        )
    if aug.re_prob > 0 and not native:  # native: per image, in timm's transform
        from timm.data.random_erasing import RandomErasing

        erasing = RandomErasing(aug.re_prob, mode="pixel", device=device.type)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    records, started, speeds, best = [], None, [], 0.0
    if saved:  # an interrupted run: on from its last epoch, exactly
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scaler.load_state_dict(saved["scaler"])
        if ema is not None:
            ema.load_state_dict(saved["ema"])
        records, speeds, best = saved["records"], saved["speeds"], saved["best"]
        _set_rng_state(saved["rng"])
        print(f"resumed from step {start}/{total}", flush=True)
    metrics_path = os.path.join(workdir, METRICS_FILE)
    with open(metrics_path, "w") as log:
        log.writelines(json.dumps(r) + "\n" for r in records)
        for step in range(start, total):
            began = time.perf_counter()  # waiting for the batch counts, as it does in the JAX run's img/s
            batch = next(loader)
            for group in optimizer.param_groups:
                group["lr"] = float(schedule(step)) * group.get("lr_scale", 1.0)
            if native:
                images = batch[0].to(device, non_blocking=True)
                images = images.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else images
                labels = batch[1].long().to(device)
            else:
                images = images_of(batch, config, device)
                labels = torch.from_numpy(batch["label"]).long().to(device)
            loss_sum, correct = 0.0, 0.0
            for chunk_images, chunk_labels in zip(images.chunk(accum), labels.chunk(accum)):
                if mixup is not None:
                    chunk_images, targets = mixup(chunk_images, chunk_labels)
                if erasing is not None:
                    chunk_images = erasing(chunk_images)
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    logits = forward(chunk_images).float()
                if mixup is not None:
                    loss = torch.sum(-targets * torch.log_softmax(logits, dim=-1), dim=-1).mean()
                else:
                    loss = torch.nn.functional.cross_entropy(
                        logits, chunk_labels, label_smoothing=config.label_smoothing
                    )
                scaler.scale(loss / accum).backward()
                loss_sum += float(loss.detach()) / accum
                correct += float((logits.argmax(-1) == chunk_labels).float().sum())
            scaler.unscale_(optimizer)
            if optim.clip_grad_norm > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), optim.clip_grad_norm)
            else:
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                with torch.no_grad():
                    for e, p in zip(ema.parameters(), model.parameters()):
                        e.mul_(config.ema_decay).add_(p.detach(), alpha=1.0 - config.ema_decay)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - began
            record = {
                "step": step + 1,
                "train_loss": loss_sum,
                "train_accuracy": correct / len(labels),
                "grad_norm": float(grad_norm),
                "lr": float(schedule(step)),
            }
            if started is not None:  # the first step compiles / warms up
                speeds.append(len(labels) / seconds)
                record.update(step_time_s=seconds, img_per_s=len(labels) / seconds)
            started = True
            if (step + 1) % steps_per_epoch == 0 or step + 1 == total:
                record["epoch"] = (step + 1) / steps_per_epoch
                record.update(evaluate(model, val_source, config, device, amp, native))
                if ema is not None:
                    record.update(
                        {
                            f"{k}_ema": v
                            for k, v in evaluate(ema, val_source, config, device, amp, native).items()
                            if k != "val_count"
                        }
                    )
                best = max(best, record["val_top1"])
            records.append(record)
            log.write(json.dumps(record) + "\n")
            if "epoch" in record and step + 1 < total:
                log.flush()
                _save_atomically(
                    {
                        "step": step + 1,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scaler": scaler.state_dict(),
                        "ema": ema.state_dict() if ema is not None else None,
                        "records": records,
                        "speeds": speeds,
                        "best": best,
                        "rng": _rng_state(),
                        "loader": None if native else loader.get_state(),
                    },
                    resume_path,
                )
    last = next(r for r in reversed(records) if "val_top1" in r)
    summary = {
        "framework": "pytorch",
        "steps": total,
        "best_val_top1": best,
        **{f"final_{k}": v for k, v in last.items() if k.startswith("val_")},
        "img_per_s": float(np.median(speeds)) if speeds else None,  # the median step, as the JAX summary's
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if device.type == "cuda" else None,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "precision": str(amp).replace("torch.", "") if amp else "float32",
        "torch_compile": compile,
        "batches": "native" if native else "shared",
        "versions": {"torch": torch.__version__, "timm": __import__("timm").__version__},
    }
    partial = os.path.join(workdir, SUMMARY_FILE + ".partial")
    with open(partial, "w") as f:
        json.dump(summary, f, indent=2)
    os.replace(partial, os.path.join(workdir, SUMMARY_FILE))
    if os.path.isfile(resume_path):
        os.remove(resume_path)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--jax_devices", type=int, default=1)
    parser.add_argument("--init", choices=["shared", "independent"], default="shared")
    parser.add_argument("--torch_compile", action="store_true")
    parser.add_argument("--batches", choices=["shared", "native"], default="shared")
    args = parser.parse_args()
    try:
        train(
            args.workdir,
            jax_devices=args.jax_devices,
            shared_init=args.init == "shared",
            compile=args.torch_compile,
            native=args.batches == "native",
        )
    except KeyboardInterrupt:
        print("interrupted: this PyTorch sub-run starts again when the comparison is run again", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
