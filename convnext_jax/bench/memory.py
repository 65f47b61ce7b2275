"""Per-device memory of the train step under FSDP, from XLA's memory analysis of the compiled
step (nothing is allocated: the state and batch are abstract), so a model too big for the
machine can be planned on it, e.g. on 8 simulated CPU devices (JAX_NUM_CPU_DEVICES=8).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import convnext_jax as cj
from convnext_jax.bench.jax_step import bench_optimizer
from convnext_jax.train.memory_fit import xla_peak_bytes
from convnext_jax.train.parallel import make_layout
from convnext_jax.train.state import TrainState
from convnext_jax.train.steps import make_train_step
from convnext_jax.train.tasks import Classification

GIB = 1024.0**3


def abstract_state(model_name: str, *, ema: bool, **model_options: Any) -> tuple[Any, Any, Any, Any]:
    """(graphdef, rest, tx, state) with every array of the state abstract (shape and dtype only)."""
    model = nnx.eval_shape(lambda: cj.create_model(model_name, **model_options))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = bench_optimizer(params)
    state = jax.eval_shape(lambda p: TrainState.create(p, tx, ema=ema), params)
    return graphdef, rest, tx, state


def sharded_state_bytes(layout: Any, state: Any) -> int:
    """Bytes of `state` one device holds under `layout` (sharded arrays divided by the fsdp size)."""
    dims = jax.tree.leaves(layout.state_dims(state))
    return int(
        sum(
            np.prod(leaf.shape) * leaf.dtype.itemsize // (layout.fsdp if dim >= 0 else 1)
            for leaf, dim in zip(jax.tree.leaves(state), dims)
        )
    )


def fsdp_memory(
    model_name: str,
    *,
    fsdp: int,
    batch_per_device: int,
    image_size: int,
    num_classes: int = 1000,
    ema: bool = True,
    **model_options: Any,
) -> dict[str, Any]:
    """One row: the train step on every device with mesh (devices / fsdp) x fsdp, compiled from
    abstract inputs; state bytes per device and XLA's per-device peak estimate."""
    layout = make_layout(-1, fsdp)
    graphdef, rest, tx, state = abstract_state(model_name, ema=ema, num_classes=num_classes, **model_options)
    shardings = layout.state_sharding(state)
    if isinstance(shardings, jax.sharding.NamedSharding):
        shardings = jax.tree.map(lambda _: shardings, state)
    state = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), state, shardings)
    devices = layout.replicas
    micro = layout.sharding(layout.micro_batch_spec)
    batch = {
        "image": jax.ShapeDtypeStruct(
            (1, batch_per_device * devices, image_size, image_size, 3), jnp.uint8, sharding=micro
        ),
        "label": jax.ShapeDtypeStruct((1, batch_per_device * devices), jnp.int32, sharding=micro),
    }
    step = make_train_step(
        graphdef, rest, tx, Classification(num_classes, 0.1), ema_decay=0.9999 if ema else 0.0, layout=layout
    )
    compiled = jax.jit(step, donate_argnums=(0,)).lower(state, batch, jax.random.key(0)).compile()
    analysis = compiled.memory_analysis()
    params = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(state.params))
    return {
        "model": model_name,
        "params_m": params / 1e6,
        "mesh": f"{devices // fsdp}x{fsdp}",
        "batch_per_device": batch_per_device,
        "state_gib_per_device": sharded_state_bytes(layout, state) / GIB,
        "xla_args_gib": analysis.argument_size_in_bytes / GIB,
        "xla_temp_gib": analysis.temp_size_in_bytes / GIB,
        "xla_peak_gib": xla_peak_bytes(analysis) / GIB,
    }
