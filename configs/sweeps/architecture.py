"""Study step 5: ConvNeXt V1 vs V2 x size x resolution x depth scaled consistently
(depth_multiplier scales every stage, keeping the 1:1:3:1 ratio). The report plots accuracy
against parameters, GMACs and resolution.

    python -m convnext_jax.sweep run --config configs/sweeps/architecture.py:tiny --workdir runs/arch_tiny
"""

from configs.common import study_base
from convnext_jax.sweep import with_sweep


def get_config(arg: str | None = None):
    config, tiny = study_base(arg)
    if tiny:
        config.num_epochs = 2
        return with_sweep(
            config,
            space="model.name: choice(convnext_atto, convnextv2_atto); "
            "model.depth_multiplier: grid(1.0, 2.0); data.image_size: grid(32, 64)",
            seeds=1,
        )
    config.model.remat = "full"  # the large sizes at 384 px need it on 24 GB cards
    return with_sweep(
        config,
        space="model.name: choice(convnext_atto, convnext_nano, convnext_tiny, convnext_base, "
        "convnext_large, convnextv2_atto, convnextv2_nano, convnextv2_tiny, convnextv2_base, "
        "convnextv2_large); data.image_size: grid(224, 384)",
        seeds=3,
        max_device_batch=32,
    )
