"""The training config: every key with its default and meaning (`SCHEMA`), the defaults config
files start from (`base_config`), and `validate`, which every config passes before anything is
built or written. `python -m convnext_jax.main --config FILE --show_config` lists every key."""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from convnext_jax import schema
from convnext_jax.data.mixup import pairing_problem
from convnext_jax.data.robustness import EXTRA_SETS, extra_set_of
from convnext_jax.data.sources import SOURCE_KINDS
from convnext_jax.errors import ConfigError
from convnext_jax.models.config import REMAT_POLICIES
from convnext_jax.models.fcmae import FCMAEConfig, image_size_problem
from convnext_jax.models.variants import list_models, model_config
from convnext_jax.ops.table import OPTION, impl_choices
from convnext_jax.schema import Key
from convnext_jax.train.optim import LR_SCALING, OPTIMIZERS, SCHEDULES  # defined beside what they name

DTYPES = ("float32", "bfloat16", "float16")
MIN_IMAGE_SIZE = 32  # the model's total stride


def _model_names() -> tuple[str, ...]:
    return ("", *list_models())


def _unit(default: float, help: str, *, high_open: bool = False, run: bool = True) -> Key:
    return Key(default, help, low=0.0, high=1.0, high_open=high_open, run=run)


TASK_NAMES = ("classification", "fcmae")  # train/tasks/ has their classes

SCHEMA: schema.Schema = {
    "task": Key(
        "classification",
        "what the model learns: classification, or fcmae (ConvNeXt-V2's masked "
        "autoencoder pre-training; the val metric is the masked-patch loss)",
        choices=TASK_NAMES,
    ),
    "seed": Key(0, "seed of the init, the data order and every random draw (derived per step)", low=0),
    "num_epochs": Key(8, "epochs to train", low=1),
    "batch_size": Key(
        64, "global batch per optimizer step = per-device micro-batch x devices x optim.grad_accum_steps", low=1
    ),
    "loss": Key(
        "ce",
        "classification loss: ce (softmax cross-entropy) | bce (binary cross-entropy per class on the "
        "smoothed / mixup targets, timm's --bce-loss)",
        choices=("ce", "bce"),
    ),
    "bce_target_thresh": _unit(
        0.0, "loss bce: > 0 binarises the targets at this threshold (timm's --bce-target-thresh; 0 off)", high_open=True
    ),
    "bce_sum": Key(False, "loss bce: sum over classes, then mean over examples (timm's --bce-sum)"),
    "label_smoothing": _unit(0.1, "label smoothing of the cross-entropy (mixup/cutmix targets too)", high_open=True),
    "log_every": Key(10, "optimizer steps between train-metric lines (and at every epoch end)", low=1, run=False),
    "compile_cache": Key(
        "",
        "persistent XLA compilation cache: a directory, '' (~/.cache/convnext_jax/xla or "
        "$CONVNEXT_JAX_COMPILE_CACHE) or 'off'",
        run=False,
    ),
    "device_memory_gb": Key(
        0.0,
        "> 0: the device's memory (GB); the run takes the largest micro-batch per device whose train step "
        "fits it (XLA's estimate, 10% kept free) and derives optim.grad_accum_steps (the global batch stays)",
        low=0.0,
        run=False,
    ),
    "device_memory_cache": Key(
        "", "device_memory_gb: directory of memory_fit.json, the steps' peaks ('' = the workdir)", run=False
    ),
    "target_accuracy": _unit(0.0, "> 0: summary.json reports the first epoch whose val top-1 reaches it", run=False),
    "ema_decay": _unit(
        0.0, "> 0: keep an EMA of the weights (per optimizer step), evaluated as val_*_ema", high_open=True
    ),
    "select_on": Key(
        "",
        "the validation metric that picks the best checkpoint: val_top1, val_top1_ema (the EMA "
        "weights), best (the better of the two at each evaluation; val_top1_best); '': the task's "
        "(val_top1, FCMAE val_loss)",
        choices=("", "val_top1", "val_top1_ema", "best"),
        run=False,
    ),
    "model": {
        "name": Key(
            "convnextv2_atto",
            "a registered ConvNeXt variant (timm's names); '' with init_from: the architecture stored there",
            choices=_model_names,
        ),
        "num_classes": Key(0, "classifier size; 0: the dataset's class count", low=0),
        "depths": Key((), "blocks per stage; (): the variant's", item_low=1),
        "dims": Key((), "channels per stage; (): the variant's", item_low=1),
        "depth_multiplier": Key(1.0, "multiply every stage depth (rounded up)", low=0.0, low_open=True),
        "width_multiplier": Key(1.0, "multiply every stage width (rounded to a multiple of 8)", low=0.0, low_open=True),
        "drop_path_rate": _unit(0.0, "stochastic depth of the last block (linear from 0)", high_open=True),
        "head_drop_rate": _unit(0.0, "dropout before the classifier", high_open=True),
        "head_init_scale": Key(1.0, "scale of the classifier's initial weights", low=0.0, low_open=True),
        "dtype": Key(
            "float32", "compute dtype (params stay float32; float16 uses dynamic loss scaling)", choices=DTYPES
        ),
        "remat": Key(
            "none",
            "rematerialise blocks: none | full (store nothing) | dots (keep matmul outputs)",
            choices=REMAT_POLICIES,
            run=False,
        ),
        "remat_segments": Key(
            0, "checkpoint this many segments per stage instead of every block (0: every block)", low=0, run=False
        ),
        "scan_blocks": Key(False, "lax.scan over the blocks of a stage (compile time flat in depth)", run=False),
        **{
            option: Key(
                "auto",
                f"{op} implementation (convnext_jax.ops); auto: the fastest for the backend",
                choices=impl_choices(op),
                run=False,
            )
            for op, option in OPTION.items()
        },
        "init_from": Key(
            "",
            "pretrained weights: a timm/official .pth/.safetensors, a convnext_jax weights "
            "directory or a training workdir",
        ),
        "reset_head": Key(False, "with init_from: a fresh classifier (another class count)"),
    },
    "data": {
        "source": Key(
            "embedded:digits",
            "embedded:digits | synthetic | folder:/path (with train/ and val/ "
            "class folders) | tfds:NAME | prepared:/path (python -m "
            "convnext_jax.data.prepare)",
        ),
        "data_dir": Key("", "TFDS data_dir (datasets prepared as ArrayRecord)"),
        "image_size": Key(224, "training and evaluation resolution (px)", low=MIN_IMAGE_SIZE),
        "crop_pct": Key(
            0.875, "evaluation: resize to image_size / crop_pct, then center-crop", low=0.0, high=1.0, low_open=True
        ),
        "aug_repeats": Key(
            1,
            "repeated augmentation (timm's --aug-repeats, RepeatAugSampler): each epoch shows "
            "1/N of the images N times, the copies augmented differently on different devices; "
            "1 off",
            low=1,
        ),
        "workers": Key(
            0, "worker processes that decode and augment (0: threads of the main process)", low=0, run=False
        ),
        "threads": Key(
            0,
            "decoding/augmenting threads per process (0: the cores divided among the processes, "
            "at most 8: one process's GIL saturates near 5; on bigger machines add data.workers)",
            low=0,
            run=False,
        ),
        "image_ops": Key(
            "auto",
            "resize/warp implementation: native (C++, built on first use), pil, or auto "
            "(native when it builds); the same pixels either way, native is faster",
            choices=("auto", "native", "pil"),
            run=False,
        ),
        "on_bad_image": Key(
            "skip",
            "image folders: an unreadable image is skipped in training (replaced by the "
            "next, warned once, counted) and left out of evaluation (named, counted); "
            "'error' stops the run naming the file",
            choices=("skip", "error"),
            run=False,
        ),
        "normalize": Key(True, "subtract mean and divide by std"),
        "mean": Key((0.485, 0.456, 0.406), "per-channel mean (RGB, 0..1)", length=3),
        "std": Key((0.229, 0.224, 0.225), "per-channel std (RGB, 0..1)", length=3, item_low=1e-6),
        "augment": {
            "scale": Key((0.08, 1.0), "RandomResizedCrop area range", length=2, item_low=0.0),
            "hflip": _unit(0.5, "horizontal flip probability"),
            "auto_augment": Key("", "RandAugment, timm's syntax, e.g. rand-m9-mstd0.5-inc1 ('' off)"),
            "color_jitter": Key(0.0, "colour jitter strength (when auto_augment is off)", low=0.0),
            "re_prob": _unit(0.0, "random erasing probability"),
            "mixup_alpha": Key(0.0, "mixup Beta(alpha, alpha) (0 off)", low=0.0),
            "cutmix_alpha": Key(0.0, "cutmix Beta(alpha, alpha) (0 off)", low=0.0),
            "mixup_prob": _unit(1.0, "probability of mixup/cutmix per batch"),
            "mixup_switch_prob": _unit(0.5, "probability of cutmix instead of mixup when both are on"),
        },
    },
    "optim": {
        "name": Key("adamw", "optimizer", choices=OPTIMIZERS),
        "lr": Key(1e-4, "peak learning rate (before lr_scaling)", low=0.0),
        "lr_scaling": Key("none", "scale lr with batch_size / lr_base_batch", choices=LR_SCALING),
        "lr_base_batch": Key(256, "the batch size lr refers to (with lr_scaling)", low=1),
        "b1": _unit(0.9, "Adam beta1", high_open=True),
        "b2": _unit(0.999, "Adam beta2", high_open=True),
        "eps": Key(1e-8, "Adam epsilon", low=0.0, low_open=True),
        "momentum": _unit(0.9, "SGD (Nesterov) momentum", high_open=True),
        "weight_decay": Key(0.01, "decoupled weight decay (conv/linear kernels only)", low=0.0),
        "schedule": Key("cosine", "LR schedule after warmup", choices=SCHEDULES),
        "warmup_epochs": Key(5, "linear warmup epochs", low=0),
        "warmup_steps": Key(0, "> 0: linear warmup steps (instead of warmup_epochs)", low=0),
        "min_lr": Key(1e-6, "final LR of the cosine schedule", low=0.0),
        "clip_grad_norm": Key(1.0, "clip the global gradient norm (0 off)", low=0.0),
        "grad_accum_steps": Key(1, "micro-batches per optimizer step (one all-reduce per step)", low=1),
        "layer_decay": Key(0.0, "in (0, 1): layer-wise LR decay for fine-tuning (0 off)", low=0.0, high=1.0),
        "loss_scale_init": Key(2.0**16, "float16: initial loss scale", low=1.0),
        "loss_scale_growth_interval": Key(2000, "float16: finite steps before the scale doubles", low=1),
        "loss_scale_min": Key(
            1.0, "float16: stop when the scale falls below this (the loss itself is NaN/inf)", low=0.0, low_open=True
        ),
    },
    "fcmae": {
        "mask_ratio": Key(
            0.6, "fraction of each image's patches removed", low=0.0, high=1.0, low_open=True, high_open=True
        ),
        "patch_size": Key(32, "masked patch (px); equals the encoder's total stride", low=1),
        "decoder_dim": Key(512, "decoder width", low=1),
        "decoder_depth": Key(1, "decoder ConvNeXt-V2 blocks", low=0),
        "norm_pix_loss": Key(False, "predict per-patch normalised pixels"),
        "grn_stats": Key(
            "sample",
            "encoder GRN statistics: sample (per image, the paper) | batch (the official sparse code)",
            choices=("sample", "batch"),
        ),
        "init": Key(
            "official",
            "official (the official code's initialisation) | convnext (the classifier's)",
            choices=("official", "convnext"),
        ),
        "pictures": Key(
            8, "val images in the reconstruction picture written at every evaluation (0: none)", low=0, run=False
        ),
        "pretrain_epochs": Key(
            0,
            "classification only: first pre-train the same encoder with FCMAE for this many "
            "epochs (WORKDIR/pretrain, with the fcmae.* keys below), then fine-tune for "
            "num_epochs - pretrain_epochs (equal total epochs)",
            low=0,
        ),
        "lr": Key(1.5e-4, "with pretrain_epochs: the pre-training LR (before lr_scaling)", low=0.0),
        "weight_decay": Key(0.05, "with pretrain_epochs: the pre-training weight decay", low=0.0),
        "b2": Key(0.95, "with pretrain_epochs: the pre-training Adam beta2", low=0.0, high=1.0, high_open=True),
        "warmup_epochs": Key(40, "with pretrain_epochs: the pre-training warmup epochs", low=0),
    },
    "eval": {
        "extra_sets": Key(
            (),
            "evaluated at the end of training (TFDS, prepared under data.data_dir): any of "
            "imagenet_v2, imagenet_sketch, imagenet_a, imagenet_r (200 classes: logits "
            "restricted to them), imagenet2012_real (multi-label ReaL); needs 1000 classes",
            run=False,
        ),
    },
    "mesh": {
        "data": Key(
            -1,
            "devices the batch is split over by data parallelism (-1: the devices left after fsdp)",
            low=-1,
            run=False,
        ),
        "fsdp": Key(
            1,
            "devices params, gradients, optimizer state and EMA are sharded over (ZeRO-3; the batch is "
            "split over data x fsdp; 1: off, -1: the devices left after data)",
            low=-1,
            run=False,
        ),
        "fsdp_min_size": Key(2**14, "with fsdp: arrays with fewer elements stay replicated", low=0, run=False),
    },
    "checkpoint": {
        "every_epochs": Key(1, "save a checkpoint every N epochs (and at the end)", low=1, run=False),
        "every_steps": Key(0, "also save every N optimizer steps (0 off)", low=0, run=False),
        "every_minutes": Key(
            0.0, "also save when this many minutes passed since the last save (0 off)", low=0.0, run=False
        ),
        "keep": Key(2, "the latest checkpoints kept (the last one always)", low=1, run=False),
        "keep_best": Key(
            1,
            "also kept: the best checkpoints by the selection metric (select_on / the task's "
            "val metric), which `python -m convnext_jax.average --top_k` can use",
            low=0,
            run=False,
        ),
    },
}

# Model keys passed to the model as ConvNeXtConfig fields (name/num_classes/init_* are not fields).
MODEL_FIELDS = (
    "drop_path_rate",
    "head_drop_rate",
    "head_init_scale",
    "dtype",
    "remat",
    "remat_segments",
    "scan_blocks",
    *OPTION.values(),
)


def base_config() -> ml_collections.ConfigDict:
    """Every key at its default (unlocked; config files override and lock)."""
    return schema.build(SCHEMA)


def describe(config: ml_collections.ConfigDict | None = None) -> str:
    """Every key with its value, default, meaning and allowed values."""
    return schema.describe(SCHEMA, config)


def run_keys() -> list[str]:
    """The keys that define what a run computes (a resumed run must keep them)."""
    return [dotted for dotted, key in schema.walk(SCHEMA) if key.run]


def model_overrides(model: ml_collections.ConfigDict) -> dict[str, Any]:
    """The `create_model` keyword arguments of the config's model section (beyond name and classes)."""
    kwargs: dict[str, Any] = {field: model[field] for field in MODEL_FIELDS}
    for field in ("depths", "dims"):
        if model[field]:
            kwargs[field] = tuple(model[field])
    kwargs.update(depth_multiplier=model.depth_multiplier, width_multiplier=model.width_multiplier)
    return kwargs


def fcmae_config(config: ml_collections.ConfigDict, encoder: Any) -> Any:
    """The FCMAEConfig of the config's fcmae section around an encoder config."""
    fc = config.fcmae
    return FCMAEConfig(
        encoder=encoder.replace(num_classes=0, grn_stats=fc.grn_stats),
        mask_ratio=fc.mask_ratio,
        patch_size=fc.patch_size,
        decoder_dim=fc.decoder_dim,
        decoder_depth=fc.decoder_depth,
        norm_pix_loss=fc.norm_pix_loss,
        init=fc.init,
    )


def _source_problems(data: ml_collections.ConfigDict) -> list[str]:
    kind, _, arg = data.source.partition(":")
    if data.source in ("embedded:digits", "synthetic"):
        return []
    if kind == "folder" and arg:
        root = os.path.expanduser(arg)
        if not os.path.isdir(root):
            return [f"data.source {data.source!r}: the folder {root} does not exist"]
        missing = [split for split in ("train", "val") if not os.path.isdir(os.path.join(root, split))]
        if missing:
            return [
                f"data.source {data.source!r}: {root} has no {' and no '.join(missing)}/ folder (expected "
                f"{root}/train/<class>/<images> and {root}/val/<class>/<images>)"
            ]
        return []
    if kind == "tfds" and arg:
        return []
    if kind == "prepared" and arg:
        root = os.path.expanduser(arg)
        manifest = os.path.join(root, "prepared.json")
        if not os.path.isfile(manifest):
            return [
                f"data.source {data.source!r}: {root} is not a prepared dataset (no prepared.json); make one "
                f"with `python -m convnext_jax.data.prepare folder:/path/to/images {root}`"
            ]
        with open(manifest) as f:
            splits = json.load(f).get("splits", {})
        missing = [split for split in ("train", "val") if split not in splits]
        return (
            [f"data.source {data.source!r}: the prepared dataset has no {' and no '.join(missing)} split"]
            if missing
            else []
        )
    return [
        f"data.source must be one of {', '.join(SOURCE_KINDS)}; got {data.source!r}"
        + schema.closest(data.source, ("embedded:digits", "synthetic"))
    ]


def _problems(config: ml_collections.ConfigDict, check_paths: bool) -> list[str]:
    problems = schema.check(SCHEMA, config)
    if check_paths and isinstance(config.get("data", {}).get("source"), str):
        problems += _source_problems(config.data)
    init_from = config.get("model", {}).get("init_from")
    if check_paths and isinstance(init_from, str) and init_from and not os.path.exists(os.path.expanduser(init_from)):
        problems.append(f"model.init_from: {init_from} does not exist")
    if problems:
        return problems  # the cross-key rules below assume the types are right
    model, data, optim, aug = config.model, config.data, config.optim, config.data.augment
    if config.select_on in ("val_top1_ema", "best") and not config.ema_decay:
        problems.append(f"select_on={config.select_on!r} compares the EMA weights: set ema_decay > 0 (e.g. 0.9999)")
    unknown = [name for name in config.eval.extra_sets if not isinstance(name, str) or extra_set_of(name) is None]
    if unknown:
        problems.append(
            f"eval.extra_sets: unknown set(s) {', '.join(map(repr, unknown))}; choose from {', '.join(EXTRA_SETS)}"
        )
    elif config.eval.extra_sets and config.task != "classification":
        problems.append("eval.extra_sets are classification benchmarks: leave them empty for task " + config.task)
    if config.loss == "bce" and config.task != "classification":
        problems.append(f"loss='bce' is a classification loss; task {config.task} has its own (leave loss 'ce')")
    if config.select_on and config.task != "classification":
        problems.append(
            f"select_on={config.select_on!r} picks by val top-1: it applies to task classification (the "
            f"{config.task} task selects on its own metric; leave select_on '')"
        )
    mesh = config.mesh
    if 0 in (mesh.data, mesh.fsdp) or mesh.data == mesh.fsdp == -1:
        problems.append(
            f"mesh.data={mesh.data}, mesh.fsdp={mesh.fsdp}: each is a number of devices or -1 (the "
            f"rest), and at most one is -1 (e.g. mesh.fsdp=8, or mesh.data=4 mesh.fsdp=2)"
        )
    if config.device_memory_gb and optim.grad_accum_steps != 1:
        problems.append(
            f"device_memory_gb derives optim.grad_accum_steps from the memory; leave it at 1 (got "
            f"{optim.grad_accum_steps}), or set device_memory_gb=0 to choose it yourself"
        )
    if config.batch_size % optim.grad_accum_steps:
        problems.append(
            f"batch_size {config.batch_size} is not divisible by optim.grad_accum_steps {optim.grad_accum_steps}"
        )
    if not 0.0 < optim.layer_decay < 1.0 and optim.layer_decay not in (0.0, 1.0):
        problems.append(f"optim.layer_decay must be in (0, 1), or 0 to turn it off; got {optim.layer_decay}")
    if aug.scale[0] > aug.scale[1] or aug.scale[1] > 1.0 or aug.scale[0] <= 0.0:
        problems.append(f"data.augment.scale must be (lo, hi) with 0 < lo <= hi <= 1, got {tuple(aug.scale)}")
    micro = config.batch_size // optim.grad_accum_steps
    if (aug.mixup_alpha > 0 or aug.cutmix_alpha > 0) and pairing_problem(micro):
        problems.append(pairing_problem(micro, "batch_size / optim.grad_accum_steps"))
    if aug.auto_augment:
        from convnext_jax.data.randaugment import rand_augment_from_string

        try:
            rand_augment_from_string(aug.auto_augment)
        except ValueError as e:
            problems.append(f"data.augment.auto_augment: {e}")
    if config.task == "fcmae":
        fc = config.fcmae
        problem = image_size_problem(data.image_size, data.image_size, fc.patch_size)
        if problem:
            problems.append(f"task fcmae: {problem} (fcmae.patch_size)")
        if optim.layer_decay:
            problems.append("task fcmae: optim.layer_decay is for fine-tuning; set it to 0")
        if aug.mixup_alpha or aug.cutmix_alpha:
            problems.append("task fcmae: mixup/cutmix mix labels, which pre-training does not use; set them to 0")
        if fc.pretrain_epochs:
            problems.append(
                "fcmae.pretrain_epochs is for a classification run that pre-trains first; with task fcmae set it to 0"
            )
    elif config.fcmae.pretrain_epochs >= config.num_epochs:
        problems.append(
            f"fcmae.pretrain_epochs ({config.fcmae.pretrain_epochs}) must be below num_epochs "
            f"({config.num_epochs}): the total, pre-training plus fine-tuning"
        )
    if not model.name and not model.init_from:
        problems.append(
            "model.name is empty: name a model (e.g. convnextv2_atto), or set model.init_from to take "
            "the architecture of pretrained weights"
        )
    if model.name:
        try:
            encoder = model_config(model.name, num_classes=model.num_classes, **model_overrides(model))
            if config.task == "fcmae" or config.fcmae.pretrain_epochs:
                fcmae_config(config, encoder)
        except (ValueError, TypeError) as e:
            problems.append(f"model: {e}")
    return problems


def validate(config: ml_collections.ConfigDict, *, check_paths: bool = True) -> None:
    """Raise ConfigError listing every problem of the config (types, choices, ranges, cross-key
    rules and, with `check_paths`, the data folder and pretrained weights); nothing is built."""
    problems = _problems(config, check_paths)
    if problems:
        raise ConfigError(
            "invalid config:\n  "
            + "\n  ".join(problems)
            + "\n(`python -m convnext_jax.main --config FILE --show_config` lists every key)"
        )
