"""Side by side with PyTorch: the same recipe trained by convnext_jax and by timm (python -m
convnext_jax.compare). Each (framework, seed) is a sub-run in its own process; a report compares
accuracy over seeds, curves, throughput and memory."""
