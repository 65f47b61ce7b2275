"""The `sweep` section of a study config: what to search, how, and what to optimise.

A study config is a training config (see convnext_jax/train/defaults.py) plus this section,
added by `with_sweep`. Every field can be overridden: --config.sweep.sampler=tpe.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from convnext_jax.sweep.space import Dimension, SearchSpaceError, parse_space, validate_keys

SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "successive_halving", "hyperband")
# objective -> (direction, per-epoch value reported for pruning)
OBJECTIVES = {"best_val_top1": ("maximize", "val_top1"), "final_val_loss": ("minimize", "val_loss"),
              "epochs_to_target": ("minimize", "val_top1")}


def sweep_defaults() -> ml_collections.ConfigDict:
    sweep = ml_collections.ConfigDict()
    sweep.space = ""  # "key: dist(args); ..." (see convnext_jax/sweep/space.py)
    sweep.sampler = "grid"  # | "random" | "tpe"
    sweep.num_trials = 0  # points to sample (random/tpe); the grid runs every point
    sweep.seeds = 1  # repeats of every point with seeds seed, seed+1, ...
    sweep.objective = "best_val_top1"  # | "final_val_loss" | "epochs_to_target" (not reached: num_epochs + 1)
    sweep.pruner = "none"  # | "median" | "successive_halving" | "hyperband", fed by per-epoch validation
    sweep.pruner_startup_trials = 3  # median: complete trials before pruning starts
    sweep.pruner_warmup_epochs = 1  # median: epochs before a trial may be pruned
    sweep.storage = ""  # SQLAlchemy URL; "" = sqlite:///WORKDIR/study.db
    sweep.study_name = "study"
    sweep.sampler_seed = 0
    sweep.max_device_batch = 0  # > 0: derive optim.grad_accum_steps so batch_size / (devices x accum) <= this
    sweep.heartbeat_s = 60  # a worker that stops beating for grace_s is dead: its trial fails and is retried
    sweep.grace_s = 180
    sweep.max_retries = 3
    return sweep


def with_sweep(config: ml_collections.ConfigDict, **fields: Any) -> ml_collections.ConfigDict:
    """Add a `sweep` section (defaults updated with `fields`) to a training config, and lock it."""
    sweep = sweep_defaults()
    for key, value in fields.items():
        if key not in sweep:
            raise KeyError(f"unknown sweep field {key!r}; valid: {sorted(sweep.keys())}")
        sweep[key] = value
    with config.unlocked():
        config.sweep = sweep
    config.lock()
    return config


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A validated sweep section together with the training config it sweeps."""

    dims: tuple[Dimension, ...]
    sampler: str
    num_trials: int
    seeds: int
    objective: str
    pruner: str
    pruner_startup_trials: int
    pruner_warmup_epochs: int
    storage: str
    study_name: str
    sampler_seed: int
    max_device_batch: int
    heartbeat_s: int
    grace_s: int
    max_retries: int

    @property
    def direction(self) -> str:
        return OBJECTIVES[self.objective][0]

    @property
    def reported_metric(self) -> str:
        return OBJECTIVES[self.objective][1]


def split_config(config: ml_collections.ConfigDict) -> tuple[SweepSpec, ml_collections.ConfigDict]:
    """(validated sweep spec, the training config without `sweep`). All errors before any trial runs."""
    if "sweep" not in config:
        raise SearchSpaceError("this config has no `sweep` section: a study config adds one with "
                               "convnext_jax.sweep.with_sweep(config, space=...) (see configs/sweeps/)")
    fields = config.sweep.to_dict()
    train = ml_collections.ConfigDict({k: v for k, v in config.to_dict().items() if k != "sweep"})
    train.lock()
    dims = tuple(parse_space(fields["space"]))
    if not dims and fields["seeds"] < 2:
        raise SearchSpaceError("the search space is empty (sweep.space = ''): give it at least one "
                               "'key: dist(args)' entry, or set sweep.seeds >= 2 to repeat the base config")
    validate_keys(list(dims), train)
    for name, allowed in (("sampler", SAMPLERS), ("pruner", PRUNERS), ("objective", tuple(OBJECTIVES))):
        if fields[name] not in allowed:
            raise SearchSpaceError(f"sweep.{name} must be one of {allowed}, got {fields[name]!r}")
    if fields["seeds"] < 1:
        raise SearchSpaceError(f"sweep.seeds must be >= 1, got {fields['seeds']}")
    if fields["sampler"] != "grid" and fields["num_trials"] < 1:
        raise SearchSpaceError(f"sweep.num_trials must be >= 1 for the {fields['sampler']} sampler")
    if fields["objective"] == "epochs_to_target" and not train.target_accuracy:
        raise SearchSpaceError("objective epochs_to_target needs target_accuracy > 0 in the config")
    spec = SweepSpec(dims=dims, **{k: v for k, v in fields.items() if k != "space"})
    if spec.sampler == "grid":
        from convnext_jax.sweep.space import grid_points

        grid_points(list(dims))  # raises if a dimension is continuous
    return spec, train
