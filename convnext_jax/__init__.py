"""convnext-jax: ConvNeXt V1/V2 training in JAX/Flax NNX with parity to the PyTorch references."""

from convnext_jax.convert import WeightImportError, export_pytorch_weights, load_pytorch_weights
from convnext_jax.models import (
    ConvNeXt,
    ConvNeXtConfig,
    build_model,
    count_params,
    create_model,
    list_models,
    model_config,
    weight_decay_mask,
)

__all__ = [
    "ConvNeXt", "ConvNeXtConfig", "WeightImportError", "build_model", "count_params", "create_model",
    "export_pytorch_weights", "list_models", "load_pytorch_weights", "model_config", "weight_decay_mask",
]
__version__ = "0.1.0"
