"""Optimizer and learning-rate schedules from the `config.optim` section."""

from __future__ import annotations

import math
from typing import Any, Mapping

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


def build_optimizer(optim: Any, params: Any, schedule: optax.Schedule,
                    layer_ids: Mapping[tuple[Any, ...], np.ndarray] | None = None,
                    decay_mask: Any = None) -> optax.GradientTransformation:
    """Global-norm clipping (every precision mode) -> AdamW/Adam/SGD with the weight-decay mask
    (`decay_mask`, default `weight_decay_mask(params)`: kernels only) -> layer-wise LR decay when
    `optim.layer_decay` is in (0, 1), with the model's `layer_ids` (`models.naming.layer_ids`).

    Gradient accumulation is the train step's job (it averages micro-batch gradients before
    calling this optimizer once per optimizer step).
    """
    if optim.name not in OPTIMIZERS:
        raise ValueError(f"optim.name must be one of {OPTIMIZERS}, got {optim.name!r}")
    parts = []
    if optim.clip_grad_norm and optim.clip_grad_norm > 0:
        parts.append(optax.clip_by_global_norm(optim.clip_grad_norm))
    mask = weight_decay_mask(params) if decay_mask is None else decay_mask
    if optim.name == "adamw":
        parts.append(optax.adamw(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=optim.weight_decay,
                                 mask=mask))
    elif optim.name == "adam":  # L2-free Adam, as torch.optim.Adam(weight_decay=0)
        parts.append(optax.adam(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps))
    else:
        parts.append(optax.add_decayed_weights(optim.weight_decay, mask=mask))
        parts.append(optax.sgd(schedule, momentum=optim.momentum, nesterov=True))
    layer_decay = optim.get("layer_decay", 0.0)
    if layer_decay and layer_decay != 1.0:
        if not 0.0 < layer_decay < 1.0:
            raise ValueError(f"optim.layer_decay must be in (0, 1) (or 0 to disable), got {layer_decay}")
        if layer_ids is None:
            raise ValueError("optim.layer_decay needs the model's layer ids (models.naming.layer_ids)")
        parts.append(scale_by_layer(layer_decay_scales(params, layer_ids, layer_decay)))
    return optax.chain(*parts)
