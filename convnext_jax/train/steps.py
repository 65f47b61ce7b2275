"""Pure, jit-able train and eval steps over (params, opt_state) with the model graph closed over."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

TrainState = dict[str, Any]  # {"params", "opt_state", "step"}


def soft_targets(labels: jax.Array, num_classes: int, label_smoothing: float) -> jax.Array:
    """Integer labels -> smoothed one-hot; soft labels (mixup/cutmix) pass through."""
    if labels.ndim == 2:
        return labels.astype(jnp.float32)
    return optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)


def make_train_step(graphdef: nnx.GraphDef, rest: nnx.State, tx: optax.GradientTransformation, *,
                    num_classes: int, label_smoothing: float, ema_decay: float = 0.0,
                    grad_accum_steps: int = 1) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
    """(state, batch, key) -> (new state, metrics). Metrics include `finite`, False when the
    loss or the gradient norm is NaN/inf (the caller stops; the update is not applied).

    With `ema_decay` > 0 the state carries "ema", an exponential moving average of the params
    updated once per optimizer step (every `grad_accum_steps` micro-steps), as timm's ModelEmaV2."""

    def train_step(state: TrainState, batch: dict[str, jax.Array], key: jax.Array):
        targets = soft_targets(batch["label"], num_classes, label_smoothing)

        def loss_fn(params):
            logits = nnx.merge(graphdef, params, rest)(batch["image"], train=True, rng=key)
            return optax.softmax_cross_entropy(logits, targets).mean(), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        candidate = {"params": params, "opt_state": opt_state, "step": state["step"] + 1}
        if "ema" in state:
            optimizer_step = (state["step"] + 1) % grad_accum_steps == 0
            decay = jnp.where(optimizer_step, ema_decay, 1.0)
            candidate["ema"] = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state["ema"], params)
        # Keep the old state when the step is not finite, so nothing bad reaches a checkpoint.
        new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), candidate, state)
        accuracy = jnp.mean(jnp.argmax(logits, -1) == jnp.argmax(targets, -1))
        return new_state, {"loss": loss, "accuracy": accuracy, "grad_norm": grad_norm, "finite": finite}

    return train_step


def make_eval_step(graphdef: nnx.GraphDef, rest: nnx.State) -> Callable[..., dict[str, jax.Array]]:
    """(params, batch) -> sums over the valid (mask=1) examples: loss, top-1, top-5, count."""

    def eval_step(params: Any, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        logits = nnx.merge(graphdef, params, rest)(batch["image"])
        labels = batch["label"]
        mask = batch["mask"].astype(jnp.float32)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        k = min(5, logits.shape[-1])
        top5 = jnp.any(jax.lax.top_k(logits, k)[1] == labels[:, None], axis=-1)
        return {"loss": jnp.sum(loss * mask), "top1": jnp.sum((jnp.argmax(logits, -1) == labels) * mask),
                "top5": jnp.sum(top5 * mask), "count": jnp.sum(mask)}

    return eval_step
