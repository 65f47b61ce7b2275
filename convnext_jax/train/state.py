"""The train state (a typed pytree) and float16 dynamic loss scaling.

On disk (orbax) the state is the plain dict of `to_checkpoint`, so checkpoints keep one layout
whatever the execution options; RNG keys are never stored (they derive from seed and step).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class LossScaling:
    """Dynamic loss scaling for float16 compute, as torch.amp.GradScaler: the loss is multiplied
    by `scale` before differentiation; a step whose gradient is not finite is skipped and the
    scale halved; after `growth_interval` finite steps in a row it is doubled."""

    init_scale: float = 2.0**16
    growth_interval: int = 2000

    def initial_state(self) -> dict[str, jax.Array]:
        return {"scale": jnp.asarray(self.init_scale, jnp.float32), "good_steps": jnp.zeros((), jnp.int32)}

    def update(self, state: dict[str, jax.Array], finite: jax.Array) -> dict[str, jax.Array]:
        good = jnp.where(finite, state["good_steps"] + 1, 0)
        grow = good >= self.growth_interval
        scale = jnp.where(finite, jnp.where(grow, state["scale"] * 2.0, state["scale"]), state["scale"] * 0.5)
        return {"scale": scale, "good_steps": jnp.where(grow, 0, good)}


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    """Everything one optimizer step reads and writes.

    step: optimizer steps taken (int32 scalar); params and opt_state; ema: an exponential moving
    average of the params (None without EMA); loss_scale: LossScaling's state (None unless float16).
    """

    step: jax.Array
    params: Any
    opt_state: Any
    ema: Any = None
    loss_scale: Any = None

    @classmethod
    def create(
        cls,
        params: Any,
        tx: optax.GradientTransformation,
        *,
        ema: bool = False,
        loss_scaling: LossScaling | None = None,
    ) -> TrainState:
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            ema=jax.tree.map(jnp.copy, params) if ema else None,
            loss_scale=loss_scaling.initial_state() if loss_scaling is not None else None,
        )

    def replace(self, **changes: Any) -> TrainState:
        return dataclasses.replace(self, **changes)

    def to_checkpoint(self) -> dict[str, Any]:
        """The on-disk layout: {"params", "opt_state", "step"[, "ema"][, "loss_scale"]}."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_checkpoint(cls, tree: dict[str, Any]) -> TrainState:
        return cls(**tree)
