"""The complete, documented set of config keys; config files start from `base_config()` and
override. Locked by the caller, so every key a config or a --config.x override uses exists here."""

from __future__ import annotations

import ml_collections

from convnext_jax.models.config import ConvNeXtConfig

# ConvNeXtConfig fields that change how the model runs, not what it computes; present in every
# config so that `--config.model.options.norm_impl=xla` etc. work from the command line.
EXECUTION_OPTIONS = ("remat", "remat_segments", "scan_blocks", "dwconv_impl", "norm_impl", "gelu_impl")


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.num_epochs = 8
    config.batch_size = 64  # global batch = per-device micro-batch x devices x optim.grad_accum_steps
    config.label_smoothing = 0.1
    config.log_every = 10
    config.target_accuracy = 0.0  # > 0: summary.json reports the first epoch reaching it
    config.ema_decay = 0.0  # > 0: keep an EMA of the params (per optimizer step), evaluated as val_*_ema

    config.model = ml_collections.ConfigDict()
    config.model.name = "convnextv2_atto"
    config.model.num_classes = 0  # 0: from the dataset
    config.model.drop_path_rate = 0.0
    config.model.dtype = "float32"  # compute dtype: float32 | bfloat16 | float16 (dynamic loss scaling); params stay float32
    # Other ConvNeXtConfig fields: the execution options below, and whatever a config adds
    # (depths, dims, depth_multiplier, ...; configs add keys with options.update).
    config.model.options = ml_collections.ConfigDict({name: getattr(ConvNeXtConfig(), name)
                                                      for name in EXECUTION_OPTIONS})
    config.model.init_from = ""  # .pth/.safetensors (timm/official) or a convnext_jax weights dir
    config.model.reset_head = False  # with init_from: keep a fresh classifier (different class count)

    config.data = ml_collections.ConfigDict()
    config.data.source = "embedded:digits"  # | "synthetic" | "folder:/path" | "tfds:name"
    config.data.data_dir = ""  # TFDS data_dir
    config.data.image_size = 224
    config.data.crop_pct = 0.875
    config.data.workers = 0
    config.data.normalize = True
    config.data.mean = (0.485, 0.456, 0.406)
    config.data.std = (0.229, 0.224, 0.225)
    config.data.augment = ml_collections.ConfigDict()
    config.data.augment.scale = (0.08, 1.0)
    config.data.augment.hflip = 0.5
    config.data.augment.auto_augment = ""  # e.g. "rand-m9-mstd0.5-inc1"
    config.data.augment.color_jitter = 0.0
    config.data.augment.re_prob = 0.0
    config.data.augment.mixup_alpha = 0.0
    config.data.augment.cutmix_alpha = 0.0
    config.data.augment.mixup_prob = 1.0
    config.data.augment.mixup_switch_prob = 0.5

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "adamw"  # | "adam" | "sgd"
    config.optim.lr = 1e-4
    config.optim.lr_scaling = "none"  # | "linear" | "sqrt": lr x f(batch_size / lr_base_batch)
    config.optim.lr_base_batch = 256
    config.optim.b1 = 0.9
    config.optim.b2 = 0.999
    config.optim.eps = 1e-8
    config.optim.momentum = 0.9
    config.optim.weight_decay = 0.01
    config.optim.schedule = "cosine"  # | "onecycle" | "constant"
    config.optim.warmup_epochs = 5
    config.optim.warmup_steps = 0  # > 0 overrides warmup_epochs
    config.optim.min_lr = 1e-6
    config.optim.clip_grad_norm = 1.0
    config.optim.grad_accum_steps = 1  # micro-batches per optimizer step (gradients averaged, one all-reduce)
    config.optim.layer_decay = 0.0  # in (0, 1): layer-wise LR decay (fine-tuning), timm's layer assignment
    # float16 only: dynamic loss scaling (torch GradScaler defaults); a non-finite step is skipped and the
    # scale halved; training stops when the scale falls below loss_scale_min (the loss itself is NaN/inf).
    config.optim.loss_scale_init = 2.0**16
    config.optim.loss_scale_growth_interval = 2000
    config.optim.loss_scale_min = 1.0

    config.checkpoint = ml_collections.ConfigDict()
    config.checkpoint.every_epochs = 1
    config.checkpoint.keep = 2
    return config


def seed_baseline_config(source: str) -> ml_collections.ConfigDict:
    """The study's baseline (shared/docs/STUDY.md step 1), unlocked: ConvNeXt-T, AdamW lr 1e-4, wd 0.01,
    cosine with 5 warmup epochs, drop_path 0.1, label smoothing 0.1, clip 1.0, bf16, total batch 64."""
    config = base_config()
    config.data.source = source
    config.num_epochs = 100
    config.batch_size = 64
    config.label_smoothing = 0.1
    config.model.name = "convnext_tiny"
    config.model.drop_path_rate = 0.1
    config.model.dtype = "bfloat16"
    config.optim.name = "adamw"
    config.optim.lr = 1e-4
    config.optim.weight_decay = 0.01
    config.optim.schedule = "cosine"
    config.optim.warmup_epochs = 5
    config.optim.clip_grad_norm = 1.0
    return config
