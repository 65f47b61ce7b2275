"""The PyTorch reference train step: timm model, AdamW, optional bf16 autocast and torch.compile."""

from __future__ import annotations

import logging
import time
from typing import Any

from convnext_jax.bench.timing import Prepared


def quiet_torch() -> None:
    """Silence torch's notice that a CUDA build on a machine without a CUDA runtime uses CUDA_HOME
    (printed when torch.compile first builds on a CPU-only machine): nothing to act on here."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


def prepared_torch(run: Any, *, name: str, batch_size: int, device: str, compiled: bool) -> Prepared:
    """Run a PyTorch step once (torch.compile compiles on the first call) and return it with its
    result row (compile time = first call minus a steady call, for torch.compile only; threads,
    CUDA peak memory)."""
    import torch

    quiet_torch()  # before the first call: torch.compile builds there
    start = time.perf_counter()
    run()
    first_s = time.perf_counter() - start

    def row(timing: dict[str, float]) -> dict[str, Any]:
        compile_s = max(first_s - timing["median_s"], 0.0) if compiled else None  # eager compiles nothing
        return {
            "framework": name,
            "compile_s": compile_s,
            **timing,
            "img_per_s": batch_size / timing["median_s"],
            "threads": torch.get_num_threads(),
            "device_peak_mib": torch.cuda.max_memory_allocated() / 1024**2 if device == "cuda" else None,
        }

    return Prepared(run, row)


def torch_name(compile: bool, bf16: bool, prefix: str = "torch") -> str:
    return prefix + ("+compile" if compile else " eager") + (" bf16" if bf16 else "")


def prepare_torch_train_step(
    model_name: str,
    *,
    batch_size: int,
    image_size: int,
    num_classes: int = 1000,
    compile: bool = False,
    bf16: bool = False,
    channels_last: bool = True,
    drop_path_rate: float = 0.0,
    **model_options: Any,
) -> Prepared:
    """timm's model under the same step as `prepare_jax_train_step` (CE + smoothing, clip, AdamW),
    built (and with torch.compile compiled) and ready to be timed."""
    import timm
    import torch
    from timm.optim import create_optimizer_v2

    device = "cuda" if torch.cuda.is_available() else "cpu"
    timm_kwargs = {k: v for k, v in model_options.items() if k in ("depths", "dims")}
    model = (
        timm.create_model(model_name, num_classes=num_classes, drop_path_rate=drop_path_rate, **timm_kwargs)
        .to(device)
        .train()
    )
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    opt = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=gen).to(device, memory_format=memory_format)
    labels = torch.randint(0, num_classes, (batch_size,), generator=gen).to(device)
    forward = torch.compile(model) if compile else model

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(forward(images), labels, label_smoothing=0.1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        else:
            loss.item()

    return prepared_torch(run, name=torch_name(compile, bf16), batch_size=batch_size, device=device, compiled=compile)


def prepare_torch_inference(
    model_name: str,
    *,
    batch_size: int,
    image_size: int,
    num_classes: int = 1000,
    compile: bool = False,
    bf16: bool = False,
    **model_options: Any,
) -> Prepared:
    """timm's eval forward (inference_mode, channels_last, optional autocast / torch.compile),
    built and ready to be timed."""
    import timm
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    timm_kwargs = {k: v for k, v in model_options.items() if k in ("depths", "dims")}
    model = timm.create_model(model_name, num_classes=num_classes, **timm_kwargs).to(device).eval()
    model = model.to(memory_format=torch.channels_last)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    images = images.to(device, memory_format=torch.channels_last)
    forward = torch.compile(model) if compile else model

    def run() -> None:
        with torch.inference_mode(), torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            logits = forward(images)
        if device == "cuda":
            torch.cuda.synchronize()
        else:
            logits.sum().item()

    return prepared_torch(run, name=torch_name(compile, bf16), batch_size=batch_size, device=device, compiled=compile)
