"""What both sides train: the config's recipe, the parts the PyTorch side reproduces, and the
deterministic variant used for the step-for-step parity check."""

from __future__ import annotations

import ml_collections

from convnext_jax.errors import ConfigError
from convnext_jax.sweep.space import apply_params


def unsupported(config: ml_collections.ConfigDict) -> list[str]:
    """The config's features the PyTorch side cannot reproduce, by key (empty: it can)."""
    problems = []
    if config.task != "classification":
        problems.append(f"task={config.task} (the comparison trains classifiers)")
    if config.get("fcmae", {}).get("pretrain_epochs"):
        problems.append("fcmae.pretrain_epochs (two-stage FCMAE runs)")
    if config.loss != "ce":
        problems.append(f"loss={config.loss} (the PyTorch side trains with cross-entropy)")
    if config.optim.name != "adamw":
        problems.append(f"optim.name={config.optim.name} (the PyTorch side runs AdamW)")
    if config.model.init_from:
        problems.append("model.init_from (both sides start from the JAX model's initialisation)")
    if config.data.aug_repeats > 1:
        problems.append("data.aug_repeats (repeated augmentation)")
    if config.eval.extra_sets:
        problems.append("eval.extra_sets (only the val split is compared)")
    return problems


def parity_config(config: ml_collections.ConfigDict, steps: int, steps_per_epoch: int) -> ml_collections.ConfigDict:
    """The recipe without stochastic parts (drop path, dropout, mixup/cutmix, random erasing, EMA),
    logging every step, for as many epochs as `steps` need."""
    return apply_params(
        config,
        {
            "model.drop_path_rate": 0.0,
            "model.head_drop_rate": 0.0,
            "data.augment.mixup_alpha": 0.0,
            "data.augment.cutmix_alpha": 0.0,
            "data.augment.re_prob": 0.0,
            "ema_decay": 0.0,
            "log_every": 1,
            "num_epochs": -(-steps // steps_per_epoch),
        },
    )


def seeds_of(values: list[str]) -> list[int]:
    """--seeds 0,1,2 as distinct integers, in order."""
    try:
        seeds = list(dict.fromkeys(int(v) for v in values))
    except ValueError:
        raise ConfigError(
            f"--seeds takes integers separated by commas (e.g. --seeds 0,1,2), got {','.join(values)}"
        ) from None
    if not seeds:
        raise ConfigError("--seeds needs at least one seed (e.g. --seeds 0,1,2)")
    return seeds
