"""A JAX/Flax ConvNeXt AdamW train step for benchmarking (jit, donated state)."""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import convnext_jax as cj
from convnext_jax.bench.timing import time_calls


def bench_jax_train_step(model_name: str, *, batch_size: int, image_size: int, num_classes: int = 1000,
                         steps: int = 10, warmup: int = 2, **model_options: Any) -> dict[str, Any]:
    """Compile and time one AdamW step (cross-entropy, label smoothing 0.1, clip 1.0)."""
    model = cj.create_model(model_name, num_classes=num_classes, **model_options)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.chain(optax.clip_by_global_norm(1.0),
                     optax.adamw(1e-3, weight_decay=0.05, mask=cj.weight_decay_mask(params)))
    opt_state = tx.init(params)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.standard_normal((batch_size, image_size, image_size, 3)), jnp.float32)
    labels = optax.smooth_labels(jax.nn.one_hot(rng.integers(0, num_classes, batch_size), num_classes), 0.1)

    def step(params, opt_state, images, labels, key):
        def loss_fn(params):
            logits = nnx.merge(graphdef, params, rest)(images, train=True, rng=key)
            return optax.softmax_cross_entropy(logits, labels).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    jitted = jax.jit(step, donate_argnums=(0, 1))
    key = jax.random.key(0)
    start = time.perf_counter()
    compiled = jitted.lower(params, opt_state, images, labels, key).compile()
    compile_s = time.perf_counter() - start
    state = {"params": params, "opt": opt_state}

    def run() -> None:
        state["params"], state["opt"], loss = compiled(state["params"], state["opt"], images, labels, key)
        loss.block_until_ready()

    timing = time_calls(run, steps=steps, warmup=warmup)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return {"framework": "jax", "compile_s": compile_s, **timing,
            "img_per_s": batch_size / timing["median_s"],
            "gflops_per_step": float(cost.get("flops", 0.0)) / 1e9 if cost else float("nan")}
