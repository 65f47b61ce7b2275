"""Optimizer and learning-rate schedules from the `config.optim` section."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from convnext_jax.models import weight_decay_mask
from convnext_jax.train.layer_decay import layer_decay_scales, scale_by_layer

SCHEDULES = ("cosine", "onecycle", "constant")
OPTIMIZERS = ("adamw", "adam", "sgd")
LR_SCALING = ("none", "linear", "sqrt")


def scaled_lr(base_lr: float, global_batch: int, *, rule: str = "none", base_batch: int = 256) -> float:
    """Scale the LR with the global batch: linear (lr * B / base), sqrt, or none."""
    if rule not in LR_SCALING:
        raise ValueError(f"lr_scaling must be one of {LR_SCALING}, got {rule!r}")
    if rule == "linear":
        return base_lr * global_batch / base_batch
    if rule == "sqrt":
        return base_lr * math.sqrt(global_batch / base_batch)
    return base_lr


@dataclasses.dataclass(frozen=True)
class LearningRate:
    """The learning rate at each optimizer step: linear warmup from 0 over `warmup_steps`, then
    cosine from the peak down to min_lr at `total_steps` (timm's per-step cosine), OneCycle, or
    constant. The one definition: the optimizer applies it (with the two LRs as arrays in its
    state, so sweeps share a compilation) and the logs show it (`lr(step, peak, min)` with numbers).
    """

    total_steps: int
    schedule: str = "cosine"
    warmup_steps: int = 0

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {self.total_steps}")

    def __call__(self, step: Any, peak_lr: Any, min_lr: Any = 0.0) -> Any:
        """The LR of optimizer step `step` (0-based: the first update uses step 0)."""
        warmup = min(self.warmup_steps, self.total_steps)
        if self.schedule == "onecycle":  # its own warmup (pct_start) and final LR; min_lr does not apply
            return peak_lr * optax.cosine_onecycle_schedule(
                self.total_steps, 1.0, pct_start=max(warmup, 1) / self.total_steps
            )(step)
        step = jnp.asarray(step, jnp.float32)
        rising = step / warmup if warmup else jnp.ones_like(step)
        if self.schedule == "constant":
            after = peak_lr
        else:
            decay = max(self.total_steps - warmup, 1)
            cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.clip(step - warmup, 0.0, decay) / decay))
            after = min_lr + (peak_lr - min_lr) * cosine
        return jnp.where(step < warmup, peak_lr * rising, after)


class ScheduledLRState(NamedTuple):
    count: Any
    peak_lr: Any
    min_lr: Any


def scale_by_learning_rate(learning_rate: LearningRate, peak_lr: float, min_lr: float) -> optax.GradientTransformation:
    """Multiply updates by learning_rate(step, peak_lr, min_lr); the two LRs are arrays in the
    state, not constants of the compiled step."""

    def init(params: Any) -> ScheduledLRState:
        del params
        return ScheduledLRState(
            jnp.zeros([], jnp.int32), jnp.asarray(peak_lr, jnp.float32), jnp.asarray(min_lr, jnp.float32)
        )

    def update(updates: Any, state: ScheduledLRState, params: Any = None) -> tuple[Any, ScheduledLRState]:
        del params
        lr = learning_rate(state.count, state.peak_lr, state.min_lr)
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


def build_optimizer(
    optim: Any,
    params: Any,
    learning_rate: LearningRate,
    *,
    peak_lr: float,
    min_lr: float = 0.0,
    layer_ids: Mapping[tuple[Any, ...], np.ndarray] | None = None,
    decay_mask: Any = None,
) -> optax.GradientTransformation:
    """Global-norm clipping (every precision mode) -> AdamW/Adam/SGD with the weight-decay mask
    (`decay_mask`, default `weight_decay_mask(params)`: kernels only) -> layer-wise LR decay when
    `optim.layer_decay` is in (0, 1), with the model's `layer_ids` (`models.naming.layer_ids`)
    -> the learning rate `learning_rate(step, peak_lr, min_lr)`.

    The optimizers run at LR 1 and the last stage scales every update by the LR (every update is
    linear in it: the same optimizer). With the numbers (LRs, weight decay, betas, eps, clip) in the
    state (`optax.inject_hyperparams`) rather than in the compiled step, sweep trials that differ
    only in them share one compilation (and the persistent compilation cache).

    Updates take an optional `grad_norm` extra argument: the global gradient norm for clipping
    (the train step passes it; with FSDP the local shards alone would give the wrong norm).
    Gradient accumulation is the train step's job (it averages micro-batch gradients before
    calling this optimizer once per optimizer step).
    """
    if optim.name not in OPTIMIZERS:
        raise ValueError(f"optim.name must be one of {OPTIMIZERS}, got {optim.name!r}")
    inner_lr = 1.0  # the LR is the last stage's
    parts = []
    if optim.clip_grad_norm and optim.clip_grad_norm > 0:
        parts.append(optax.inject_hyperparams(clip_by_global_norm)(max_norm=optim.clip_grad_norm))
    mask = weight_decay_mask(params) if decay_mask is None else decay_mask
    if optim.name == "adamw":
        parts.append(
            optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
                learning_rate=inner_lr,
                b1=optim.b1,
                b2=optim.b2,
                eps=optim.eps,
                weight_decay=optim.weight_decay,
                mask=mask,
            )
        )
    elif optim.name == "adam":  # L2-free Adam, as torch.optim.Adam(weight_decay=0)
        parts.append(
            optax.inject_hyperparams(optax.adam)(learning_rate=inner_lr, b1=optim.b1, b2=optim.b2, eps=optim.eps)
        )
    else:
        parts.append(
            optax.inject_hyperparams(optax.add_decayed_weights, static_args=("mask",))(
                weight_decay=optim.weight_decay, mask=mask
            )
        )
        parts.append(
            optax.inject_hyperparams(optax.sgd, static_args=("nesterov",))(
                learning_rate=inner_lr, momentum=optim.momentum, nesterov=True
            )
        )
    layer_decay = optim.get("layer_decay", 0.0)
    if layer_decay and layer_decay != 1.0:  # its range is the config's rule (train/config.py)
        if layer_ids is None:
            raise ValueError("optim.layer_decay needs the model's layer ids (models.naming.layer_ids)")
        parts.append(scale_by_layer(layer_decay_scales(params, layer_ids, layer_decay)))
    parts.append(scale_by_learning_rate(learning_rate, peak_lr, min_lr))
    return optax.chain(*parts)
