"""ConvNeXt V1/V2 models in Flax NNX."""

from convnext_jax.models.config import ConvNeXtConfig, scale_architecture
from convnext_jax.models.convnext import ConvNeXt, ConvNeXtBlock, ConvNeXtStage, drop_path_rates
from convnext_jax.models.params import count_params, weight_decay_mask
from convnext_jax.models.registry import VARIANTS, build_model, create_model, list_models, model_config

__all__ = [
    "ConvNeXt", "ConvNeXtBlock", "ConvNeXtConfig", "ConvNeXtStage", "VARIANTS", "build_model", "count_params",
    "create_model", "drop_path_rates", "list_models", "model_config", "scale_architecture", "weight_decay_mask",
]
