"""Native XLA:CPU kernels (XLA FFI custom calls), compiled from C++ on first use."""

from convnext_jax.kernels.build import KernelBuildError, cpu_kernels_available, load_cpu_kernels

__all__ = ["KernelBuildError", "cpu_kernels_available", "load_cpu_kernels"]
