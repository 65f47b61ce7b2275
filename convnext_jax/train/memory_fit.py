"""Fit the train step to the device's memory (`device_memory_gb`): the largest micro-batch per
device whose compiled step fits the budget, and the gradient-accumulation steps that keep the
global batch (and so the optimizer's maths) exactly the configured one.

The peak is XLA's memory analysis of the train step compiled for abstract inputs on the actual
backend (arguments + outputs + temporaries - donated aliases, as `bench memory` reports): nothing
is allocated. Candidates are the divisors of the per-device batch the task accepts (mixup: even),
largest first, then a bisection (the peak grows with the micro-batch). Peaks are cached in
WORKDIR/memory_fit.json (a study shares one, in its directory) per model, image size, precision,
remat, mesh, optimizer, EMA and backend, so each shape compiles once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from convnext_jax.errors import ConfigError
from convnext_jax.train.parallel import Layout
from convnext_jax.train.steps import make_train_step

MARGIN = 0.10  # the step's estimated peak must stay below (1 - MARGIN) x the budget: the runtime's
# own allocations (CUDA context, cuDNN workspaces, fragmentation) are not in XLA's estimate
GB = 1e9


@dataclasses.dataclass(frozen=True)
class MemoryFit:
    """The chosen micro-batch per device and accumulation steps, and why."""

    micro_per_device: int
    accum: int
    devices: int
    peak_bytes: int
    budget_bytes: int
    compiled: int  # steps compiled to find it (0: all peaks came from the cache)

    def describe(self) -> str:
        batch = self.micro_per_device * self.devices * self.accum
        return (
            f"memory: batch {batch} = {self.devices} device(s) x {self.micro_per_device} x {self.accum} "
            f"accumulation step(s); {self.micro_per_device} is the largest micro-batch per device that fits "
            f"{self.budget_bytes / GB:g} GB (device_memory_gb, {MARGIN:.0%} kept free): peak "
            f"{self.peak_bytes / GB:.2f} GB"
        )

    def summary(self) -> dict[str, Any]:
        return {
            "device_memory_gb": self.budget_bytes / GB,
            "micro_batch_per_device": self.micro_per_device,
            "step_peak_gb": round(self.peak_bytes / GB, 4),
        }


def candidates(per_device: int, multiple: int) -> list[int]:
    """Micro-batches per device that divide the per-device batch and are a multiple of what the task
    needs, largest first."""
    return [m for m in range(per_device, 0, -1) if per_device % m == 0 and m % multiple == 0]


def step_peak_bytes(
    graphdef: Any,
    rest: Any,
    tx: Any,
    task: Any,
    state: Any,
    layout: Layout,
    *,
    micro_per_device: int,
    accum: int,
    image_size: int,
    ema_decay: float,
    loss_scaling: Any,
    inputs: Any,
) -> int:
    """XLA's peak bytes per device of the train step for a [accum, micro x devices] batch of uint8
    images, compiled from abstract inputs (the state's shapes and shardings)."""
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
    micro = layout.sharding(layout.micro_batch_spec)
    rows = micro_per_device * layout.replicas
    batch = {
        "image": jax.ShapeDtypeStruct((accum, rows, image_size, image_size, 3), jnp.uint8, sharding=micro),
        "label": jax.ShapeDtypeStruct((accum, rows), jnp.int32, sharding=micro),
    }
    step = make_train_step(
        graphdef, rest, tx, task, ema_decay=ema_decay, loss_scaling=loss_scaling, layout=layout, inputs=inputs
    )
    compiled = jax.jit(step, donate_argnums=(0,)).lower(abstract, batch, jax.random.key(0)).compile()
    analysis = compiled.memory_analysis()
    if analysis is None:
        raise ConfigError(
            f"device_memory_gb: the {jax.default_backend()} backend reports no memory analysis of a compiled "
            "step; set optim.grad_accum_steps by hand instead"
        )
    return xla_peak_bytes(analysis)


def xla_peak_bytes(analysis: Any) -> int:
    """XLA's estimate of a compiled program's peak bytes per device, from its memory analysis:
    arguments + outputs + temporaries - donated aliases (the one formula `bench` reports too)."""
    return int(
        analysis.argument_size_in_bytes
        + analysis.output_size_in_bytes
        + analysis.temp_size_in_bytes
        - analysis.alias_size_in_bytes
    )


def device_peak_memory_bytes() -> int | None:
    """The most bytes in use on this process's first device so far (GPU/TPU allocators); None where
    the backend does not say (CPU)."""
    stats = jax.local_devices()[0].memory_stats()
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


class PeakCache:
    """Peaks by (shape key, micro-batch, accumulation) in a JSON file; `path` None: no file."""

    def __init__(self, path: str | None, key: dict[str, Any]):
        self.path = path
        self.key = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.what = key
        self.entries: dict[str, Any] = {}
        if path and os.path.isfile(path):
            try:
                with open(path) as f:
                    self.entries = json.load(f)
            except (OSError, ValueError):
                self.entries = {}  # a damaged cache is rebuilt, never fatal

    def get(self, micro: int, accum: int) -> int | None:
        return self.entries.get(self.key, {}).get("peaks", {}).get(f"{micro}x{accum}")

    def put(self, micro: int, accum: int, peak: int) -> None:
        entry = self.entries.setdefault(self.key, {"what": self.what, "peaks": {}})
        entry["peaks"][f"{micro}x{accum}"] = peak
        if self.path and jax.process_index() == 0:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            partial = f"{self.path}.{os.getpid()}.tmp"
            with open(partial, "w") as f:
                json.dump(self.entries, f, indent=1)
            os.replace(partial, self.path)  # concurrent trials: the last writer wins, nothing is torn


def shape_key(config: ml_collections.ConfigDict, architecture: Any, layout: Layout, task_name: str) -> dict[str, Any]:
    """What the step's memory depends on (beyond the micro-batch)."""
    device = jax.devices()[0]
    return {
        "task": task_name,
        "architecture": dataclasses.asdict(architecture) if dataclasses.is_dataclass(architecture) else architecture,
        "image_size": config.data.image_size,
        "dtype": config.model.dtype,
        "mesh": [layout.replicas // layout.fsdp, layout.fsdp],
        "optimizer": config.optim.name,
        "ema": config.ema_decay > 0,
        "backend": f"{jax.default_backend()}:{getattr(device, 'device_kind', '')}",
        "fcmae": config.fcmae.to_dict(),  # the pre-training task's masking and decoder
    }


def fit_micro_batch(
    config: ml_collections.ConfigDict,
    layout: Layout,
    multiple: int,
    peak_of: Callable[[int, int], int],
    cache: PeakCache,
) -> MemoryFit:
    """The largest micro-batch per device (a divisor of the per-device batch, a multiple of
    `multiple`) whose step peak (`peak_of(micro, accum)`) fits the budget."""
    budget = int(config.device_memory_gb * GB)
    allowed = budget * (1.0 - MARGIN)
    per_device = config.batch_size // layout.replicas
    options = candidates(per_device, multiple)
    if config.batch_size % layout.replicas or not options:
        raise ConfigError(
            f"device_memory_gb: batch_size {config.batch_size} does not split over {layout.replicas} device(s) in "
            f"micro-batches of a multiple of {multiple}: use a batch_size that is a multiple of {layout.replicas * multiple}"
        )
    compiled = 0
    peaks: dict[int, int] = {}

    def peak(micro: int) -> int:
        nonlocal compiled
        accum = per_device // micro
        value = cache.get(micro, accum)
        if value is None:
            value = peak_of(micro, accum)
            compiled += 1
            cache.put(micro, accum, value)
        peaks[micro] = value
        return value

    if peak(options[0]) <= allowed:
        chosen = options[0]
    else:  # bisection over the rest: options[lo] does not fit, find the first that does
        lo, hi = 0, len(options) - 1
        if peak(options[hi]) > allowed:
            raise ConfigError(_nothing_fits(config, layout, options[hi], peaks[options[hi]], budget))
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if peak(options[mid]) <= allowed:
                hi = mid
            else:
                lo = mid
        chosen = options[hi]
    return MemoryFit(
        micro_per_device=chosen,
        accum=per_device // chosen,
        devices=layout.replicas,
        peak_bytes=peaks[chosen],
        budget_bytes=budget,
        compiled=compiled,
    )


def _nothing_fits(config: ml_collections.ConfigDict, layout: Layout, smallest: int, peak: int, budget: int) -> str:
    knobs = []
    if config.model.remat in ("", "none"):
        knobs.append("model.remat=full (recompute activations in the backward pass)")
    if config.model.dtype == "float32":
        knobs.append("model.dtype=bfloat16 (half the activation memory)")
    if layout.fsdp == 1 and layout.replicas > 1:
        knobs.append(f"mesh.fsdp={layout.replicas} (shard parameters and optimizer state over the devices)")
    hint = ("; what would help: " + ", ".join(knobs)) if knobs else "; a smaller model or image size would"
    return (
        f"device_memory_gb={config.device_memory_gb:g}: even {smallest} image(s) per device do not fit: the "
        f"step's peak is {peak / GB:.2f} GB, above {1 - MARGIN:.0%} of the budget ({budget * (1 - MARGIN) / GB:.2f} "
        f"GB){hint}"
    )


def with_accumulation(config: ml_collections.ConfigDict, accum: int) -> ml_collections.ConfigDict:
    """A locked copy of `config` with optim.grad_accum_steps = accum."""
    fitted = ml_collections.ConfigDict(config.to_dict())
    fitted.optim.grad_accum_steps = accum
    fitted.lock()
    return fitted
