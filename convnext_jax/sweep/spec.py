"""The `sweep` section of a study config: what to search, how, and what to optimise.

A study config is a training config (`convnext_jax.train.config`) plus this section, added by
`with_sweep`. Every field can be overridden: --config.sweep.sampler=tpe; `python -m
convnext_jax.sweep run --config FILE --show_config` lists them all.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from convnext_jax import schema
from convnext_jax.schema import Key
from convnext_jax.sweep.space import Dimension, SearchSpaceError, parse_space, validate_keys

SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "successive_halving", "hyperband")
# objective -> (direction, per-epoch value reported for pruning)
OBJECTIVES = {
    "best_val_top1": ("maximize", "val_top1"),
    "best_val_top1_ema": ("maximize", "val_top1_ema"),
    "best_val_top1_best": ("maximize", "val_top1_best"),
    "final_val_loss": ("minimize", "val_loss"),
    "epochs_to_target": ("minimize", "val_top1"),
}


SCHEMA: schema.Schema = {
    "space": Key("", "what to search: 'key: dist(args); ...' over any config key (see convnext_jax/sweep/space.py)"),
    "sampler": Key("grid", "grid (every point, queued) | random | tpe", choices=SAMPLERS),
    "num_trials": Key(0, "points to sample (random/tpe); the grid runs every point", low=0),
    "seeds": Key(1, "repeats of every point with seeds seed, seed+1, ...", low=1),
    "objective": Key(
        "best_val_top1",
        "what a trial returns (best_val_top1_ema: of the EMA weights; "
        "best_val_top1_best: the better of the two each epoch; epochs_to_target: "
        "num_epochs + 1 when not reached)",
        choices=tuple(OBJECTIVES),
    ),
    "pruner": Key("none", "stop hopeless trials early, fed by per-epoch validation", choices=PRUNERS),
    "pruner_startup_trials": Key(3, "median: complete trials before pruning starts", low=0),
    "pruner_warmup_epochs": Key(1, "median: epochs before a trial may be pruned", low=0),
    "storage": Key(
        "",
        "SQLAlchemy URL of the study ('' = sqlite:///WORKDIR/study.db; postgresql://... for several "
        "machines), or journal:/shared/path/study.journal (a file on a shared filesystem, no server)",
    ),
    "study_name": Key("study", "the study's name in the storage"),
    "sampler_seed": Key(0, "seed of the random/TPE sampler", low=0),
    "max_device_batch": Key(0, "> 0: derive optim.grad_accum_steps so batch_size / (devices x accum) <= this", low=0),
    "heartbeat_s": Key(60, "seconds between a worker's heartbeats", low=1),
    "grace_s": Key(180, "a worker silent this long is dead: its trial fails and is retried", low=1),
    "max_retries": Key(3, "retries of a dead worker's trial", low=0),
}


def sweep_defaults() -> ml_collections.ConfigDict:
    return schema.build(SCHEMA)


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


def split_config(
    config: ml_collections.ConfigDict, *, check_paths: bool = False
) -> tuple[SweepSpec, ml_collections.ConfigDict]:
    """(validated sweep spec, the validated training config without `sweep`). All errors before
    any trial runs; `check_paths` also checks the data folder and pretrained weights exist."""
    from convnext_jax.train.config import validate

    if "sweep" not in config:
        raise SearchSpaceError(
            "this config has no `sweep` section: a study config adds one with "
            "convnext_jax.sweep.with_sweep(config, space=...) (see configs/sweeps/)"
        )
    fields = config.sweep.to_dict()
    train = ml_collections.ConfigDict({k: v for k, v in config.to_dict().items() if k != "sweep"})
    train.lock()
    dims = tuple(parse_space(fields["space"]))
    if not dims and fields["seeds"] < 2:
        raise SearchSpaceError(
            "the search space is empty (sweep.space = ''): give it at least one "
            "'key: dist(args)' entry, or set sweep.seeds >= 2 to repeat the base config"
        )
    validate_keys(list(dims), train)
    problems = schema.check(SCHEMA, fields, prefix="sweep.", root={"sweep": SCHEMA})
    if problems:
        raise SearchSpaceError("invalid sweep section:\n  " + "\n  ".join(problems))
    validate(train, check_paths=check_paths)
    if fields["sampler"] != "grid" and fields["num_trials"] < 1:
        raise SearchSpaceError(f"sweep.num_trials must be >= 1 for the {fields['sampler']} sampler")
    if fields["objective"] in ("best_val_top1_ema", "best_val_top1_best") and not train.ema_decay:
        raise SearchSpaceError(
            f"objective {fields['objective']} compares the EMA weights: set ema_decay > 0 in the config"
        )
    if fields["max_device_batch"] and train.device_memory_gb:
        raise SearchSpaceError(
            "sweep.max_device_batch and device_memory_gb both choose the accumulation steps: keep one "
            "(device_memory_gb fits each trial's model to the memory by itself)"
        )
    if fields["objective"] == "epochs_to_target" and not train.target_accuracy:
        raise SearchSpaceError("objective epochs_to_target needs target_accuracy > 0 in the config")
    spec = SweepSpec(dims=dims, **{k: v for k, v in fields.items() if k != "space"})
    if spec.sampler == "grid":
        from convnext_jax.sweep.space import grid_points

        grid_points(list(dims))  # raises if a dimension is continuous
    return spec, train
