"""Benchmarks: JAX train step vs the PyTorch reference, depthwise conv, compile time."""
