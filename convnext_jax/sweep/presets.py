"""Base configs for the shipped study configs (configs/sweeps/*.py).

Every study config takes one argument: "tiny" runs the study's shape on CPU in minutes (a tiny
ConvNeXt-V2 on the embedded digits, 32 px, few epochs); anything else is the data source of
the real study (folder:/path, tfds:name) on the seed baseline of shared/docs/STUDY.md step 1.
"""

from __future__ import annotations

import ml_collections

from convnext_jax.train.defaults import base_config, seed_baseline_config

TINY_EPOCHS = 3


def seed_baseline(source: str) -> ml_collections.ConfigDict:
    """STUDY.md step 1 on `source` (see `seed_baseline_config`), keeping one checkpoint per trial."""
    config = seed_baseline_config(source)
    config.checkpoint.keep = 1
    return config


def tiny_baseline() -> ml_collections.ConfigDict:
    """The baseline's recipe shrunk to CPU minutes: tiny ConvNeXt-V2, digits at 32 px, fp32."""
    config = base_config()
    config.data.source = "embedded:digits"
    config.data.image_size = 32
    config.data.crop_pct = 1.0
    config.data.mean = (0.5, 0.5, 0.5)
    config.data.std = (0.5, 0.5, 0.5)
    config.data.augment.scale = (0.6, 1.0)
    config.data.augment.hflip = 0.0
    config.num_epochs = TINY_EPOCHS
    config.batch_size = 64
    config.log_every = 100
    config.target_accuracy = 0.8
    config.model.name = "convnextv2_atto"
    config.model.options.update({"depths": (1, 1, 1, 1), "dims": (16, 24, 32, 48),
                                 "scan_blocks": True})
    config.optim.lr = 2e-3
    config.optim.weight_decay = 0.05
    config.optim.warmup_epochs = 1
    config.optim.clip_grad_norm = 1.0
    config.checkpoint.keep = 1
    return config


def study_base(arg: str) -> tuple[ml_collections.ConfigDict, bool]:
    """(unlocked base training config, is_tiny)."""
    if arg == "tiny":
        return tiny_baseline(), True
    return seed_baseline(arg or "embedded:digits"), False
