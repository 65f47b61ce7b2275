"""Accuracy side by side: the same recipe trained by convnext_jax and by PyTorch + timm.

For each seed both frameworks see the *same* batches (one grain pipeline, seeded, with the
recipe's augmentation). With `--init shared` (default) they also start from the same weights
(the JAX model's init exported to timm's layout), so any difference is each framework's
numerics; with `--init independent` timm initialises its own model from the seed, so the runs
are independent samples and the comparison is "within seed noise". Optimizer (AdamW, no decay on 1-D params), LR schedule (cosine with
warmup, per optimizer step), label smoothing and gradient clipping are the recipe's in both.
The difference that remains is each framework's numerics; the table reports mean +- std over
seeds and Welch's t statistic.

    python scripts/compare_pytorch.py --config configs/embedded_digits.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import tempfile
import time

import numpy as np
import torch

from convnext_jax.bench.timing import markdown_table
from convnext_jax.data import create_loader
from convnext_jax.data.from_config import eval_transforms_of, train_transforms_of
from convnext_jax.train import setup
from convnext_jax.train.run import train_and_evaluate
from convnext_jax.train.tasks import task_of
from convnext_jax.weights import export_pytorch_weights


def load_config(path: str, seed: int):
    spec = importlib.util.spec_from_file_location("study_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    with config.unlocked():
        config.seed = seed
    return config


def torch_model(config, num_classes: int, shared_init: bool = True) -> torch.nn.Module:
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
    )
    if shared_init:
        state = {k: torch.from_numpy(np.array(v)) for k, v in export_pytorch_weights(jax_model).items()}
        model.load_state_dict(state)
    return model


def train_torch(config, threads: int, shared_init: bool = True) -> dict[str, float]:
    """The recipe in PyTorch eager: same batches, schedule, optimizer groups, smoothing, clipping."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(threads)
    train_src, val_src = setup.data_sources(config)
    num_classes = train_src.num_classes
    model = torch_model(config, num_classes, shared_init)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optim = config.optim
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=optim.lr,
        betas=(optim.b1, optim.b2),
        eps=optim.eps,
    )
    steps_per_epoch = setup.steps_per_epoch_of(config, len(train_src))
    total = config.num_epochs * steps_per_epoch
    schedule = setup.schedule_of(config, steps_per_epoch)
    loader = iter(
        create_loader(
            train_src,
            batch_size=config.batch_size,
            shuffle=True,
            seed=config.seed,
            transforms=train_transforms_of(config),
        )
    )
    val_transforms = eval_transforms_of(config)
    erasing = None
    if config.data.augment.re_prob > 0:
        from timm.data.random_erasing import RandomErasing

        erasing = RandomErasing(config.data.augment.re_prob, mode="pixel", device="cpu")
    aug, mixup = config.data.augment, None
    if aug.mixup_alpha > 0 or aug.cutmix_alpha > 0:  # timm's batch mixup, as our step does on the device
        from timm.data import Mixup

        mixup = Mixup(
            mixup_alpha=aug.mixup_alpha,
            cutmix_alpha=aug.cutmix_alpha,
            prob=aug.mixup_prob,
            switch_prob=aug.mixup_switch_prob,
            label_smoothing=config.label_smoothing,
            num_classes=num_classes,
        )
    best, last = 0.0, {}
    for step in range(total):
        batch = next(loader)
        for group in optimizer.param_groups:
            group["lr"] = float(schedule(step))
        model.train()
        images = torch_images(batch, config, train=True)
        labels = torch.from_numpy(batch["label"]).long()
        if mixup is not None:
            images, targets = mixup(images, labels)
            loss = torch.nn.functional.cross_entropy(model(erasing(images) if erasing else images), targets)
        else:
            loss = torch.nn.functional.cross_entropy(
                model(erasing(images) if erasing else images), labels, label_smoothing=config.label_smoothing
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if optim.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), optim.clip_grad_norm)
        optimizer.step()
        if (step + 1) % steps_per_epoch == 0:
            last = evaluate_torch(model, val_src, val_transforms, config.batch_size, config)
            best = max(best, last["val_top1"])
    return {"best_val_top1": best, "final_val_top1": last["val_top1"], "final_val_loss": last["val_loss"]}


def torch_images(batch: dict, config, train: bool, erasing=None) -> torch.Tensor:
    """The loader's uint8 NHWC batch as the float NCHW input timm's GPU prefetcher makes: scaled,
    normalised, and in training randomly erased (the same stage our step runs on the device)."""
    images = torch.from_numpy(np.ascontiguousarray(batch["image"].transpose(0, 3, 1, 2))).float() / 255.0
    if config.data.normalize:
        mean = torch.tensor(config.data.mean).view(1, 3, 1, 1)
        std = torch.tensor(config.data.std).view(1, 3, 1, 1)
        images = (images - mean) / std
    if train and erasing is not None:
        images = erasing(images)
    return images


@torch.no_grad()
def evaluate_torch(model, val_src, transforms, batch_size: int, config) -> dict[str, float]:
    model.eval()
    loss = correct = count = 0.0
    for batch in create_loader(
        val_src, batch_size=batch_size, shuffle=False, num_epochs=1, drop_remainder=False, transforms=transforms
    ):
        logits = model(torch_images(batch, config, train=False))
        labels = torch.from_numpy(batch["label"]).long()
        loss += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
        correct += float((logits.argmax(-1) == labels).sum())
        count += len(labels)
    return {"val_top1": correct / count, "val_loss": loss / count}


def welch_t(a: list[float], b: list[float]) -> float:
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    return float((np.mean(a) - np.mean(b)) / math.sqrt(va + vb)) if va + vb > 0 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/embedded_digits.py")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--init", choices=["shared", "independent"], default="shared")
    parser.add_argument("--json", help="also write the per-seed results here")
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"jax": [], "pytorch": []}
    for seed in args.seeds:
        config = load_config(args.config, seed)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as workdir:
            summary = train_and_evaluate(config, workdir)
        results["jax"].append(
            {
                "seed": seed,
                "best_val_top1": summary["best_val_top1"],
                "final_val_top1": summary["final_val_top1"],
                "final_val_loss": summary["final_val_loss"],
                "seconds": time.perf_counter() - start,
            }
        )
        start = time.perf_counter()
        results["pytorch"].append(
            {
                "seed": seed,
                **train_torch(config, args.threads, args.init == "shared"),
                "seconds": time.perf_counter() - start,
            }
        )
        print(json.dumps({k: v[-1] for k, v in results.items()}), flush=True)
    rows = []
    for metric in ("best_val_top1", "final_val_top1", "final_val_loss", "seconds"):
        jax_values = [r[metric] for r in results["jax"]]
        torch_values = [r[metric] for r in results["pytorch"]]
        rows.append(
            {
                "metric": metric,
                "jax (mean ± std)": f"{np.mean(jax_values):.4f} ± {np.std(jax_values, ddof=1):.4f}",
                "pytorch (mean ± std)": f"{np.mean(torch_values):.4f} ± {np.std(torch_values, ddof=1):.4f}",
                "welch t": f"{welch_t(jax_values, torch_values):+.2f}",
            }
        )
    print(markdown_table(rows, list(rows[0])))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
