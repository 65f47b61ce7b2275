"""Optimizer and learning-rate schedules from the `config.optim` section."""

from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from convnext_jax.models import weight_decay_mask
from convnext_jax.train.layer_decay import layer_decay_scales, scale_by_layer

SCHEDULES = ("cosine", "onecycle", "constant")
OPTIMIZERS = ("adamw", "adam", "sgd")
LR_SCALING = ("linear", "sqrt", "none")


def scaled_lr(base_lr: float, global_batch: int, *, rule: str = "none", base_batch: int = 256) -> float:
    """Scale the LR with the global batch: linear (lr * B / base), sqrt, or none."""
    if rule not in LR_SCALING:
        raise ValueError(f"lr_scaling must be one of {LR_SCALING}, got {rule!r}")
    if rule == "linear":
        return base_lr * global_batch / base_batch
    if rule == "sqrt":
        return base_lr * math.sqrt(global_batch / base_batch)
    return base_lr


def lr_schedule(peak_lr: float, total_steps: int, *, schedule: str = "cosine", warmup_steps: int = 0,
                min_lr: float = 0.0, warmup_init_lr: float = 0.0) -> optax.Schedule:
    """Per-optimizer-step LR: linear warmup then cosine to min_lr, OneCycle, or constant."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    warmup_steps = min(warmup_steps, total_steps)
    if schedule == "onecycle":
        return optax.cosine_onecycle_schedule(total_steps, peak_lr, pct_start=max(warmup_steps, 1) / total_steps)
    if schedule == "constant":
        main = optax.constant_schedule(peak_lr)
    else:
        main = optax.cosine_decay_schedule(peak_lr, max(total_steps - warmup_steps, 1), alpha=min_lr / peak_lr
                                           if peak_lr else 0.0)
    if warmup_steps == 0:
        return main
    warmup = optax.linear_schedule(warmup_init_lr, peak_lr, warmup_steps)
    return optax.join_schedules([warmup, main], [warmup_steps])


def schedule_parts(total_steps: int, *, schedule: str = "cosine",
                   warmup_steps: int = 0) -> tuple[optax.Schedule, optax.Schedule]:
    """(a, b) with lr_schedule(peak, ..., min_lr=m)(t) == peak * a(t) + m * b(t): the schedule's
    shape, free of the two numbers a sweep changes, so that they can be runtime values."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    warmup_steps = min(warmup_steps, total_steps)
    zero = optax.constant_schedule(0.0)
    if schedule == "onecycle":
        return optax.cosine_onecycle_schedule(total_steps, 1.0, pct_start=max(warmup_steps, 1) / total_steps), zero
    if schedule == "constant":
        main_a, main_b = optax.constant_schedule(1.0), zero
    else:
        main_a = optax.cosine_decay_schedule(1.0, max(total_steps - warmup_steps, 1), alpha=0.0)
        main_b = lambda count: 1.0 - main_a(count)  # noqa: E731
    if warmup_steps == 0:
        return main_a, main_b
    warmup = optax.linear_schedule(0.0, 1.0, warmup_steps)
    return (optax.join_schedules([warmup, main_a], [warmup_steps]),
            optax.join_schedules([zero, main_b], [warmup_steps]))


class ScheduledLRState(NamedTuple):
    count: Any
    peak_lr: Any
    min_lr: Any


def scale_by_scheduled_lr(parts: tuple[optax.Schedule, optax.Schedule], peak_lr: float,
                          min_lr: float) -> optax.GradientTransformation:
    """Multiply updates by peak_lr * a(step) + min_lr * b(step) (`schedule_parts`); the two LRs are
    arrays in the state, not constants of the compiled step."""
    a, b = parts

    def init(params: Any) -> ScheduledLRState:
        del params
        return ScheduledLRState(jnp.zeros([], jnp.int32), jnp.asarray(peak_lr, jnp.float32),
                                jnp.asarray(min_lr, jnp.float32))

    def update(updates: Any, state: ScheduledLRState, params: Any = None) -> tuple[Any, ScheduledLRState]:
        del params
        lr = state.peak_lr * a(state.count) + state.min_lr * b(state.count)
        updates = jax.tree.map(lambda u: (u * lr).astype(u.dtype), updates)
        return updates, state._replace(count=optax.safe_int32_increment(state.count))

    return optax.GradientTransformation(init, update)


def clip_by_global_norm(max_norm: Any) -> optax.GradientTransformationExtraArgs:
    """optax.clip_by_global_norm that takes the norm from the `grad_norm` extra argument when the
    caller passes it: the train step does, so under FSDP (each device holding a shard of the
    gradient) the clip uses the norm of the whole gradient, not of the local shard."""

    def update(updates: Any, state: Any, params: Any = None, *, grad_norm: Any = None, **extra: Any):
        del params, extra
        norm = optax.tree.norm(updates) if grad_norm is None else grad_norm
        keep = jnp.squeeze(norm < max_norm)
        return jax.tree.map(lambda t: jax.lax.select(keep, t, (t / norm.astype(t.dtype)) * max_norm), updates), state

    return optax.GradientTransformationExtraArgs(optax.init_empty_state, update)


def refresh_hyperparameters(restored: Any, fresh: Any) -> Any:
    """`restored` optimizer state with the hyperparameter values of `fresh` (built from the config):
    the numbers live in the state only so that they are not compiled in; the config decides them,
    also for a resumed run."""
    kinds = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState, ScheduledLRState)

    def pick(old: Any, new: Any) -> Any:
        if isinstance(old, ScheduledLRState):
            return old._replace(peak_lr=new.peak_lr, min_lr=new.min_lr)
        if isinstance(old, kinds):
            return old._replace(hyperparams=new.hyperparams)
        return old

    return jax.tree.map(pick, restored, fresh, is_leaf=lambda x: isinstance(x, kinds))


def build_optimizer(optim: Any, params: Any, lr: optax.Schedule | tuple[optax.Schedule, optax.Schedule],
                    layer_ids: Mapping[tuple[Any, ...], np.ndarray] | None = None,
                    decay_mask: Any = None, peak_lr: float = 1.0, min_lr: float = 0.0) -> optax.GradientTransformation:
    """Global-norm clipping (every precision mode) -> AdamW/Adam/SGD with the weight-decay mask
    (`decay_mask`, default `weight_decay_mask(params)`: kernels only) -> layer-wise LR decay when
    `optim.layer_decay` is in (0, 1), with the model's `layer_ids` (`models.naming.layer_ids`)
    -> the learning rate.

    `lr` is a schedule, or the `schedule_parts` (a, b) of one: the LR is then peak_lr * a + min_lr
    * b, with both numbers in the optimizer state. Every update is linear in the LR, so this is
    the same optimizer; with the numbers (LRs, weight decay, betas, eps, clip) in the state
    (`optax.inject_hyperparams`) rather than in the compiled step, sweep trials that differ only
    in them share one compilation (and the persistent compilation cache).

    Updates take an optional `grad_norm` extra argument: the global gradient norm for clipping
    (the train step passes it; with FSDP the local shards alone would give the wrong norm).
    Gradient accumulation is the train step's job (it averages micro-batch gradients before
    calling this optimizer once per optimizer step).
    """
    if optim.name not in OPTIMIZERS:
        raise ValueError(f"optim.name must be one of {OPTIMIZERS}, got {optim.name!r}")
    inner_lr = lr if callable(lr) else 1.0
    parts = []
    if optim.clip_grad_norm and optim.clip_grad_norm > 0:
        parts.append(optax.inject_hyperparams(clip_by_global_norm)(max_norm=optim.clip_grad_norm))
    mask = weight_decay_mask(params) if decay_mask is None else decay_mask
    if optim.name == "adamw":
        parts.append(optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
            learning_rate=inner_lr, b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=optim.weight_decay,
            mask=mask))
    elif optim.name == "adam":  # L2-free Adam, as torch.optim.Adam(weight_decay=0)
        parts.append(optax.inject_hyperparams(optax.adam)(learning_rate=inner_lr, b1=optim.b1, b2=optim.b2,
                                                          eps=optim.eps))
    else:
        parts.append(optax.inject_hyperparams(optax.add_decayed_weights, static_args=("mask",))(
            weight_decay=optim.weight_decay, mask=mask))
        parts.append(optax.inject_hyperparams(optax.sgd, static_args=("nesterov",))(
            learning_rate=inner_lr, momentum=optim.momentum, nesterov=True))
    layer_decay = optim.get("layer_decay", 0.0)
    if layer_decay and layer_decay != 1.0:
        if not 0.0 < layer_decay < 1.0:
            raise ValueError(f"optim.layer_decay must be in (0, 1) (or 0 to disable), got {layer_decay}")
        if layer_ids is None:
            raise ValueError("optim.layer_decay needs the model's layer ids (models.naming.layer_ids)")
        parts.append(scale_by_layer(layer_decay_scales(params, layer_ids, layer_decay)))
    if not callable(lr):
        parts.append(scale_by_scheduled_lr(lr, peak_lr, min_lr))
    return optax.chain(*parts)
