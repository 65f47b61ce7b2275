"""Pure, jit-able train and eval steps for any task, with the model graph closed over.

The train step is one optimizer step. It runs under `shard_map` over the layout's mesh (data x
fsdp): each device scans over its share of the `grad_accum_steps` micro-batches, accumulating its
*local* gradient, and the devices average once (one gradient reduction per optimizer step, none
per micro-step). Without FSDP that is one all-reduce and the optimizer update runs on identical,
replicated values. With FSDP (ZeRO-3) the step starts by all-gathering the sharded params over
the fsdp axis, reduces the gradients with a reduce-scatter over fsdp (and an all-reduce over
data), and updates each device's shard of params, optimizer state and EMA; the gradient norm
(metrics, clipping, the finite check) is the global one, summed over the shards.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from convnext_jax.data.on_device import InputStage
from convnext_jax.train.parallel import Layout, data_parallel
from convnext_jax.train.state import LossScaling, TrainState
from convnext_jax.train.tasks.base import Task

Metrics = dict[str, jax.Array]
INPUT_KEY = 1 << 30  # folded into a micro-batch's key for the input stage (the model gets the key itself)


def make_train_step(
    graphdef: nnx.GraphDef,
    rest: nnx.State,
    tx: optax.GradientTransformation,
    task: Task,
    *,
    ema_decay: float = 0.0,
    loss_scaling: LossScaling | None = None,
    layout: Layout | None = None,
    inputs: InputStage | None = None,
) -> Callable[[TrainState, dict[str, jax.Array], jax.Array], tuple[TrainState, Metrics]]:
    """(state, batch, key) -> (new state, metrics), one optimizer step.

    `batch` leaves are [accum, micro_batch, ...] (sharded along the micro-batch axis; accum=1
    for no accumulation). Metrics: loss, the task's own (e.g. accuracy), grad_norm and `finite`
    (False when the loss or gradient norm is NaN/inf: the update is not applied; the caller
    stops, or with loss scaling the scale is halved and training goes on), plus `loss_scale`
    with loss scaling. With `ema_decay` > 0 the state's EMA is updated once per optimizer step
    (timm's ModelEmaV2). Dropout keys differ per device and per micro-batch, as each DDP rank
    has its own RNG. `inputs` prepares uint8 images on the device first (normalise, random erasing).
    """
    layout = layout or data_parallel()
    inputs = inputs or InputStage()
    axis, replicas = layout.batch_axes, layout.replicas
    # One device: a plain function without shard_map, so no all-reduce at all (XLA still runs a
    # one-device all-reduce as a full copy of the gradients).

    def varying(tree: Any) -> Any:
        return jax.lax.pcast(tree, axis, to="varying") if replicas > 1 else tree

    def local_gradients(
        params: Any, batch: dict[str, jax.Array], key: jax.Array, scale: jax.Array, fsdp: FsdpParams | None
    ):
        """This device's mean gradient, loss and task metrics over its micro-batches (no communication)."""
        device_key = jax.random.fold_in(key, jax.lax.axis_index(axis) if replicas > 1 else 0)
        local_params = fsdp.gather(params) if fsdp else varying(params)  # so grads are not all-reduced here

        def micro_gradients(index: jax.Array, micro_batch: dict[str, jax.Array]):
            micro_key = jax.random.fold_in(device_key, index)
            micro_batch = inputs.train(micro_batch, jax.random.fold_in(micro_key, INPUT_KEY))

            def loss_fn(p: Any):
                loss, metrics = task.loss(nnx.merge(graphdef, p, rest), micro_batch, micro_key)
                return loss * scale, (loss, metrics)

            grads, (loss, metrics) = jax.grad(loss_fn, has_aux=True)(local_params)
            return grads, loss, metrics

        accum = jax.tree.leaves(batch)[0].shape[0]
        if accum == 1:  # no loop: XLA optimises a loop body less well (measured ~40% slower on CPU)
            grads, loss, metrics = micro_gradients(jnp.zeros((), jnp.int32), jax.tree.map(lambda v: v[0], batch))
        else:

            def micro_step(carry, inputs):
                return jax.tree.map(jnp.add, carry, micro_gradients(*inputs)), None

            shapes = jax.eval_shape(micro_gradients, jnp.zeros((), jnp.int32), jax.tree.map(lambda v: v[0], batch))
            init = varying(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes))
            (grads, loss, metrics), _ = jax.lax.scan(micro_step, init, (jnp.arange(accum), batch))
            loss, metrics = loss / accum, jax.tree.map(lambda m: m / accum, metrics)
        return jax.tree.map(lambda g: g / (accum * scale), grads), loss, metrics

    def step(
        state: TrainState, batch: dict[str, jax.Array], key: jax.Array, fsdp: FsdpParams | None = None
    ) -> tuple[TrainState, Metrics]:
        scale = state.loss_scale["scale"] if loss_scaling else jnp.ones((), jnp.float32)
        grads, loss, metrics = local_gradients(state.params, batch, key, scale, fsdp)
        if fsdp:
            grads = fsdp.reduce_scatter(grads)
            loss, metrics = jax.lax.pmean((loss, metrics), axis)
            grad_norm = fsdp.global_norm(grads)
        else:
            if replicas > 1:
                grads, loss, metrics = jax.lax.pmean((grads, loss, metrics), axis)  # the one all-reduce
            grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

        def apply_update(kept: TrainState) -> TrainState:
            updates, opt_state = optax.with_extra_args_support(tx).update(
                grads, kept.opt_state, kept.params, grad_norm=grad_norm
            )
            params = optax.apply_updates(kept.params, updates)
            ema = (
                None
                if kept.ema is None
                else jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, kept.ema, params)
            )
            return kept.replace(step=kept.step + 1, params=params, opt_state=opt_state, ema=ema)

        # Keep the old state when the step is not finite, so nothing bad reaches a checkpoint. A
        # cond (not a select over every leaf) lets XLA update the donated state in place.
        kept = state.replace(loss_scale=None)
        new_state = jax.lax.cond(finite, apply_update, lambda kept: kept, kept)
        out = {"loss": loss, **metrics, "grad_norm": grad_norm, "finite": finite}
        if loss_scaling:
            new_state = new_state.replace(loss_scale=loss_scaling.update(state.loss_scale, finite))
            out["loss_scale"] = scale
        return new_state, out

    if replicas == 1:
        return step
    replicated = jax.sharding.PartitionSpec()

    def sharded_step(state: TrainState, batch: dict[str, jax.Array], key: jax.Array) -> tuple[TrainState, Metrics]:
        fsdp = FsdpParams(layout, layout.state_dims(state.params)) if layout.fsdp > 1 else None
        state_specs = layout.state_specs(state)  # FSDP: per leaf, from the shapes
        return jax.shard_map(
            functools.partial(step, fsdp=fsdp),
            mesh=layout.mesh,
            in_specs=(state_specs, layout.micro_batch_spec, replicated),
            out_specs=(state_specs, replicated),
        )(state, batch, key)

    return sharded_step


class FsdpParams:
    """The collectives of an FSDP step for one params tree: gather the shards for use, reduce-scatter
    the gradients, and the global norm of sharded gradients. `dims`: which dimension of each param
    is split (`Layout.state_dims` of the full shapes, taken outside shard_map; -1: replicated)."""

    def __init__(self, layout: Layout, dims: Any):
        self.layout, self.dims = layout, dims

    def gather(self, params: Any) -> Any:
        """Full params on every device, varying over the whole mesh (so gradients stay local)."""
        data, fsdp = self.layout.data_axis, self.layout.fsdp_axis

        def full(shard: jax.Array, dim: int) -> jax.Array:
            if dim < 0:
                return jax.lax.pcast(shard, (data, fsdp), to="varying")
            return jax.lax.pcast(jax.lax.all_gather(shard, fsdp, axis=dim, tiled=True), data, to="varying")

        return jax.tree.map(full, params, self.dims)

    def reduce_scatter(self, grads: Any) -> Any:
        """The mean over every device of each local full gradient, as this device's shard."""
        data, fsdp, n = self.layout.data_axis, self.layout.fsdp_axis, self.layout.replicas

        def reduce(grad: jax.Array, dim: int) -> jax.Array:
            if dim < 0:
                return jax.lax.psum(grad, (data, fsdp)) / n
            return jax.lax.psum(jax.lax.psum_scatter(grad, fsdp, scatter_dimension=dim, tiled=True), data) / n

        return jax.tree.map(reduce, grads, self.dims)

    def global_norm(self, grads: Any) -> jax.Array:
        """The L2 norm of the whole (unsharded) gradient: sharded leaves' squares summed over fsdp."""
        pairs = list(zip(jax.tree.leaves(grads), jax.tree.leaves(self.dims)))
        squares = lambda leaves: sum(
            (jnp.sum(jnp.square(g.astype(jnp.float32))) for g in leaves),  # noqa: E731
            jnp.zeros((), jnp.float32),
        )
        sharded = jax.lax.psum(squares(g for g, dim in pairs if dim >= 0), self.layout.fsdp_axis)
        return jnp.sqrt(sharded + squares(g for g, dim in pairs if dim < 0))


def make_eval_step(
    graphdef: nnx.GraphDef, rest: nnx.State, task: Task, layout: Layout | None = None, inputs: InputStage | None = None
) -> Callable[[Any, dict[str, jax.Array]], Metrics]:
    """(params, batch) -> the task's sums over the valid (mask=1) examples of the global batch.

    On a multi-device layout each device evaluates its shard of the batch under `shard_map` and
    the sums are psum-ed, like the train step (so custom calls such as the CPU kernels run on
    local shards instead of being gathered).
    """

    inputs = inputs or InputStage()

    def eval_step(params: Any, batch: dict[str, jax.Array]) -> Metrics:
        return task.eval_sums(nnx.merge(graphdef, params, rest), inputs.eval(batch))

    if layout is None or layout.replicas == 1:
        return eval_step

    def local_eval_step(params: Any, batch: dict[str, jax.Array]) -> Metrics:
        return jax.lax.psum(eval_step(params, batch), layout.batch_axes)

    return jax.shard_map(
        local_eval_step,
        mesh=layout.mesh,
        in_specs=(jax.sharding.PartitionSpec(), layout.batch_spec),
        out_specs=jax.sharding.PartitionSpec(),
    )
