"""Study step 3: global batch 32 .. 1024 x learning rate, to find the optimal LR per batch size and
the "surge" peak B* (the report fits it). The per-device batch is capped by sweep.max_device_batch
and gradient accumulation makes up the rest, so every batch size fits in memory; LR is swept at
each batch (lr_scaling none), so the optimum is measured, not assumed.

    python -m convnext_jax.sweep run --config configs/sweeps/batch.py:tiny --workdir runs/batch_tiny
    python -m convnext_jax.sweep run --config configs/sweeps/batch.py:folder:/data/x --workdir runs/batch \
        --gpus 0,1,2,3,4,5,6,7 --gpus_per_worker 8
"""

from convnext_jax.sweep import with_sweep
from configs.common import study_base


def get_config(arg: str | None = None):
    config, tiny = study_base(arg)
    config.optim.lr_scaling = "none"
    if tiny:
        config.num_epochs = 2
        return with_sweep(config, space="batch_size: grid(32, 64, 128); optim.lr: grid(1e-3, 3e-3, 1e-2, 3e-2)",
                          seeds=1, max_device_batch=64)
    return with_sweep(config, space="batch_size: grid(32, 64, 128, 256, 512, 1024); optim.lr: loggrid(1e-5, 1e-2, 7)",
                      seeds=3, max_device_batch=64, pruner="median")  # 64 x 224 px ConvNeXt-T fits a 24 GB card
