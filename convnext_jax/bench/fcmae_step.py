"""FCMAE pre-training steps for benchmarking: ours (jit, the trainer's step) and the dense PyTorch
emulation of the official FCMAE (`tests/reference/official_fcmae.py`, eager or torch.compile),
AdamW (0.9, 0.95) on both, a fresh random mask every step; and how much of the dense compute
falls on removed positions."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from convnext_jax.bench.timing import Prepared
from convnext_jax.bench.torch_step import prepared_torch, torch_name
from convnext_jax.bench.utilization import mfu, peak_tflops, xla_memory
from convnext_jax.errors import ConfigError
from convnext_jax.models.naming import fcmae_parameter_names
from convnext_jax.models.params import forward_macs

REFERENCE = Path(__file__).resolve().parents[2] / "tests" / "reference" / "official_fcmae.py"


def removed_compute(cfg: Any, image_size: int) -> dict[str, float]:
    """The dense model's MACs per image and the share spent on removed positions: everything the
    encoder computes after the stem on the removed fraction of positions (a sparse encoder skips
    it; the stem and the decoder are dense in the official code too)."""
    total = forward_macs(cfg, image_size)
    positions = (image_size // cfg.patch_size) ** 2
    removed = (positions - int(positions * (1 - cfg.mask_ratio))) / positions
    encoder = stem = 0
    for name in fcmae_parameter_names(cfg):
        if name.is_weight and name.torch_key.startswith("encoder."):
            macs = (image_size // name.stride) ** 2 * int(np.prod(name.torch_shape))
            encoder += macs
            stem += macs if name.torch_key.startswith("encoder.downsample_layers.0.") else 0
    wasted = (encoder - stem) * removed
    return {
        "gmacs_per_image": total / 1e9,
        "removed_fraction": removed,
        "wasted_gmacs": wasted / 1e9,
        "wasted_share": wasted / total,
    }


def prepare_jax_fcmae_step(
    model_name: str, *, batch_size: int, image_size: int, dtype: str = "float32", **options: Any
) -> Prepared:
    """Our trainer's FCMAE step (MaskedImageModeling task, AdamW (0.9, 0.95), wd 0.05), compiled."""
    import ml_collections

    import convnext_jax as cj
    from convnext_jax.train.optim import LearningRate, build_optimizer
    from convnext_jax.train.state import TrainState
    from convnext_jax.train.steps import make_train_step
    from convnext_jax.train.tasks import MaskedImageModeling

    model = cj.create_fcmae(model_name, dtype=dtype, norm_pix_loss=True, **options)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    optim = ml_collections.ConfigDict(
        dict(
            name="adamw",
            b1=0.9,
            b2=0.95,
            eps=1e-8,
            weight_decay=0.05,
            momentum=0.9,
            clip_grad_norm=0.0,
            layer_decay=0.0,
        )
    )
    tx = build_optimizer(optim, params, LearningRate(1000, schedule="constant"), peak_lr=1.5e-4)
    step = jax.jit(make_train_step(graphdef, rest, tx, MaskedImageModeling()), donate_argnums=(0,))
    images = jnp.asarray(
        np.random.default_rng(0).standard_normal((1, batch_size, image_size, image_size, 3)), jnp.float32
    )
    batch = {"image": images, "label": jnp.zeros((1, batch_size), jnp.int32)}
    state = TrainState.create(params, tx)
    start = time.perf_counter()
    compiled = step.lower(state, batch, jax.random.key(0)).compile()
    compile_s = time.perf_counter() - start
    holder = {"state": state, "step": 0}

    def run() -> None:
        holder["step"] += 1  # a new mask every step, as in training
        holder["state"], metrics = compiled(holder["state"], batch, jax.random.key(holder["step"]))
        metrics["loss"].block_until_ready()

    flops = 6.0 * forward_macs(model.cfg, image_size) * batch_size

    def row(timing: dict[str, float]) -> dict[str, Any]:
        return {
            "framework": f"jax {dtype}",
            "compile_s": compile_s,
            **timing,
            "img_per_s": batch_size / timing["median_s"],
            "mfu": mfu(flops, timing["median_s"], peak_tflops(dtype)),
            **xla_memory(compiled),
        }

    return Prepared(run, row)


def _reference_module() -> Any:
    if not REFERENCE.exists():
        raise ConfigError(
            f"the PyTorch FCMAE reference is {REFERENCE}, part of the repository checkout (run the "
            "benchmark from a clone with `pip install -e .`)"
        )
    spec = importlib.util.spec_from_file_location("official_fcmae", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    import sys

    sys.path.insert(0, str(REFERENCE.parents[2]))  # it imports tests.reference.official_convnext
    spec.loader.exec_module(module)
    return module


def prepare_torch_fcmae_step(
    model_name: str, *, batch_size: int, image_size: int, compile: bool = False, bf16: bool = False, **options: Any
) -> Prepared:
    """The dense PyTorch emulation of the official FCMAE under the same step (official masking per
    step, loss, AdamW (0.9, 0.95)), built (and compiled) and ready to be timed."""
    import torch

    from convnext_jax.models.variants import model_config

    cfg = model_config(model_name, **{k: v for k, v in options.items() if k in ("depths", "dims")})
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = _reference_module().FCMAE(depths=cfg.depths, dims=cfg.dims, norm_pix_loss=True).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=gen).to(device)
    num_patches = (image_size // 32) ** 2
    keep = int(num_patches * 0.4)
    forward = torch.compile(model) if compile else model

    def run() -> None:
        noise = torch.randn(batch_size, num_patches, device=device)
        ranks = torch.argsort(torch.argsort(noise, dim=1), dim=1)
        mask = (ranks >= keep).float()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss, _, _ = forward(images, mask)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        else:
            loss.item()

    return prepared_torch(
        run, name=torch_name(compile, bf16, "torch dense"), batch_size=batch_size, device=device, compiled=compile
    )
