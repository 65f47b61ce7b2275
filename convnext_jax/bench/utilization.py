"""Memory and utilisation figures for the benchmarks: XLA memory analysis, device memory stats,
model FLOPs (analytic, from the model's MACs) and MFU against the device's peak."""

from __future__ import annotations

from typing import Any

import jax

from convnext_jax.models.params import forward_macs
from convnext_jax.train.memory_fit import device_peak_memory_bytes, xla_peak_bytes

# Dense peak TFLOP/s per device for the compute dtype (vendor datasheets, no sparsity).
PEAK_TFLOPS = {
    ("H100", "bfloat16"): 989.0,
    ("H100", "float32"): 67.0,
    ("H200", "bfloat16"): 989.0,
    ("H200", "float32"): 67.0,
    ("A100", "bfloat16"): 312.0,
    ("A100", "float32"): 19.5,
    ("4090", "bfloat16"): 165.2,
    ("4090", "float32"): 82.6,
}


def peak_tflops(dtype: str, device: Any | None = None) -> float | None:
    """The device's dense peak for `dtype`, from its kind (e.g. 'NVIDIA H100 80GB HBM3'); None if unknown (CPU)."""
    kind = (device or jax.devices()[0]).device_kind
    for (name, table_dtype), value in PEAK_TFLOPS.items():
        if name in kind and table_dtype == dtype:
            return value
    return None


def train_model_flops(cfg: Any, image_size: int, batch_size: int) -> float:
    """Model FLOPs of one train step: 3 x forward (forward + backward), 2 FLOPs per MAC. Remat
    recomputation is not counted, as in the usual MFU definition."""
    return 6.0 * forward_macs(cfg, image_size) * batch_size


def xla_memory(compiled: Any) -> dict[str, float]:
    """Bytes of the compiled program from XLA's memory analysis: arguments, temporaries and the
    estimated peak (`memory_fit.xla_peak_bytes`), in MiB."""
    analysis = compiled.memory_analysis()
    if analysis is None:
        return {}
    mib = 1024.0**2
    return {
        "xla_args_mib": analysis.argument_size_in_bytes / mib,
        "xla_temp_mib": analysis.temp_size_in_bytes / mib,
        "xla_peak_mib": xla_peak_bytes(analysis) / mib,
    }


def device_peak_memory_mib() -> float | None:
    """Peak MiB in use on this process's first device since start (GPU/TPU allocators); None where
    not reported (CPU)."""
    peak = device_peak_memory_bytes()
    return None if peak is None else peak / 1024.0**2


def mfu(model_flops: float, seconds: float, peak: float | None) -> float | None:
    return None if not peak else model_flops / seconds / (peak * 1e12)
