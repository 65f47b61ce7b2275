"""convnext-jax: ConvNeXt V1/V2 training in JAX/Flax NNX with parity to the PyTorch references.

The public names are imported lazily, so `import convnext_jax.data` (e.g. in grain worker
processes) does not pay for importing jax/flax.
"""

from __future__ import annotations

from convnext_jax.lazy import lazy_exports

_EXPORTS = {
    "create_fcmae": "convnext_jax.models",
    "FCMAE": "convnext_jax.models",
    "FCMAEConfig": "convnext_jax.models",
    "WeightImportError": "convnext_jax.weights",
    "export_pytorch_weights": "convnext_jax.weights",
    "load_pretrained": "convnext_jax.weights",
    "load_pytorch_weights": "convnext_jax.weights",
    "load_weights": "convnext_jax.weights",
    "save_weights": "convnext_jax.weights",
    "ConvNeXt": "convnext_jax.models",
    "ConvNeXtConfig": "convnext_jax.models",
    "build_model": "convnext_jax.models",
    "count_params": "convnext_jax.models",
    "create_model": "convnext_jax.models",
    "list_models": "convnext_jax.models",
    "model_config": "convnext_jax.models",
    "weight_decay_mask": "convnext_jax.models",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
