"""ConvNeXt V1/V2 models in Flax NNX.

Names are imported lazily, so `convnext_jax.models.config` (which configs validate against)
can be imported without the modules, the ops' implementations or the native kernels.
"""

from __future__ import annotations

from convnext_jax.lazy import lazy_exports

_EXPORTS = {
    "create_fcmae": "convnext_jax.models.registry",
    "build_fcmae": "convnext_jax.models.registry",
    "FCMAE": "convnext_jax.models.fcmae",
    "FCMAEConfig": "convnext_jax.models.fcmae",
    "ConvNeXtConfig": "convnext_jax.models.config",
    "scale_architecture": "convnext_jax.models.config",
    "ConvNeXt": "convnext_jax.models.convnext",
    "ConvNeXtBlock": "convnext_jax.models.convnext",
    "ConvNeXtStage": "convnext_jax.models.convnext",
    "drop_path_rates": "convnext_jax.models.convnext",
    "count_params": "convnext_jax.models.params",
    "weight_decay_mask": "convnext_jax.models.params",
    "VARIANTS": "convnext_jax.models.variants",
    "build_model": "convnext_jax.models.registry",
    "create_model": "convnext_jax.models.registry",
    "list_models": "convnext_jax.models.variants",
    "model_config": "convnext_jax.models.variants",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
