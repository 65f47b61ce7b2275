"""Shared helpers for the tests."""

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The persistent compilation cache is on by default: the suite uses its own (subprocesses inherit
# it), so it neither reads nor fills the user's ~/.cache/convnext_jax.
os.environ.setdefault(
    "CONVNEXT_JAX_COMPILE_CACHE", os.path.join(tempfile.gettempdir(), f"convnext_jax_test_cache_{os.getpid()}")
)

import numpy as np
import torch


def randomize_(module: torch.nn.Module, seed: int = 0, scale: float = 0.5) -> torch.nn.Module:
    """Add noise to the constant-initialised params (norm scales/biases, biases, layer scale,
    GRN gamma/beta) so that a mapping error anywhere changes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 or "grn" in name or "gamma" in name:
                p.add_(scale * torch.randn(p.shape, generator=gen))
    return module


def nchw_to_nhwc(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().numpy().transpose(0, 2, 3, 1))
