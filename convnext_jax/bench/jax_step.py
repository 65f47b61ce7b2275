"""A JAX/Flax ConvNeXt AdamW train step for benchmarking (jit, donated state)."""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

import convnext_jax as cj
from convnext_jax.bench.timing import Prepared
from convnext_jax.bench.utilization import device_peak_memory_mib, mfu, peak_tflops, train_model_flops, xla_memory
from convnext_jax.models.params import forward_macs
from convnext_jax.train.optim import LearningRate, build_optimizer
from convnext_jax.train.state import TrainState
from convnext_jax.train.steps import make_train_step
from convnext_jax.train.tasks import Classification


def bench_optimizer(params: Any) -> optax.GradientTransformation:
    """The benchmarks' optimizer: AdamW (wd 0.05, no-decay mask), clip 1.0, constant LR 1e-3."""
    optim = ml_collections.ConfigDict(
        dict(
            name="adamw",
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            weight_decay=0.05,
            momentum=0.9,
            clip_grad_norm=1.0,
            layer_decay=0.0,
        )
    )
    return build_optimizer(optim, params, LearningRate(1000, schedule="constant"), peak_lr=1e-3)


def prepare_jax_train_step(
    model_name: str, *, batch_size: int, image_size: int, num_classes: int = 1000, **model_options: Any
) -> Prepared:
    """The trainer's own step (`make_train_step`), compiled: AdamW with the no-decay
    mask, cross-entropy with label smoothing 0.1, clip 1.0. Returns the compiled
    call and its result row, ready to be timed (alone or interleaved with others)."""
    model = cj.create_model(model_name, num_classes=num_classes, **model_options)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = bench_optimizer(params)
    state = TrainState.create(params, tx)
    rng = np.random.default_rng(0)
    batch = {
        "image": jnp.asarray(rng.standard_normal((1, batch_size, image_size, image_size, 3)), jnp.float32),
        "label": jnp.asarray(rng.integers(0, num_classes, (1, batch_size))),
    }  # [accum=1, batch, ...]
    step = make_train_step(graphdef, rest, tx, Classification(num_classes, 0.1))
    jitted = jax.jit(step, donate_argnums=(0,))
    key = jax.random.key(0)
    start = time.perf_counter()
    compiled = jitted.lower(state, batch, key).compile()
    compile_s = time.perf_counter() - start
    holder = {"state": state}

    def run() -> None:
        holder["state"], metrics = compiled(holder["state"], batch, key)
        metrics["loss"].block_until_ready()

    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = train_model_flops(model.cfg, image_size, batch_size)

    def row(timing: dict[str, float]) -> dict[str, Any]:
        return {
            "framework": "jax",
            "compile_s": compile_s,
            **timing,
            "img_per_s": batch_size / timing["median_s"],
            "model_gflops_per_step": flops / 1e9,
            "xla_gflops_per_step": float(cost.get("flops", 0.0)) / 1e9 if cost else float("nan"),
            "mfu": mfu(flops, timing["median_s"], peak_tflops(model.cfg.dtype)),
            **xla_memory(compiled),
            "device_peak_mib": device_peak_memory_mib(),
        }

    return Prepared(run, row)


def prepare_jax_inference(
    model_name: str, *, batch_size: int, image_size: int, num_classes: int = 1000, **model_options: Any
) -> Prepared:
    """The jitted eval forward (logits) on one batch, compiled. Returns the compiled
    call and its result row, ready to be timed (alone or interleaved with others)."""
    model = cj.create_model(model_name, num_classes=num_classes, **model_options)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    images = jnp.asarray(np.random.default_rng(0).standard_normal((batch_size, image_size, image_size, 3)), jnp.float32)
    forward = jax.jit(lambda p, x: nnx.merge(graphdef, p, rest)(x))
    start = time.perf_counter()
    compiled = forward.lower(params, images).compile()
    compile_s = time.perf_counter() - start
    flops = 2.0 * forward_macs(model.cfg, image_size) * batch_size

    def row(timing: dict[str, float]) -> dict[str, Any]:
        return {
            "framework": f"jax {model.cfg.dtype}",
            "compile_s": compile_s,
            **timing,
            "img_per_s": batch_size / timing["median_s"],
            "mfu": mfu(flops, timing["median_s"], peak_tflops(model.cfg.dtype)),
            **xla_memory(compiled),
            "device_peak_mib": device_peak_memory_mib(),
        }

    return Prepared(lambda: compiled(params, images).block_until_ready(), row)
