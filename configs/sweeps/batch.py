"""Study step 3: global batch 32 .. 1024 x learning rate, to find the optimal LR per batch size and
the "surge" peak B* (the report fits it from the batch sizes whose optimum the LR grid brackets).
The per-device batch is capped by sweep.max_device_batch and gradient accumulation makes up the
rest, so every batch size fits in memory; LR is swept at each batch (lr_scaling none), so the
optimum is measured, not assumed. The tiny version (digits, 2 epochs, 2 seeds, final val loss:
smoother than top-1 on a 360-image val split) brackets the optimum at all 5 batch sizes.

    python -m convnext_jax.sweep run --config configs/sweeps/batch.py:tiny --workdir runs/batch_tiny --workers 2
    python -m convnext_jax.sweep run --config configs/sweeps/batch.py:folder:/data/x --workdir runs/batch \
        --gpus 0,1,2,3,4,5,6,7 --gpus_per_worker 8
"""

from configs.common import study_base
from convnext_jax.sweep import with_sweep


def get_config(arg: str | None = None):
    config, tiny = study_base(arg)
    config.optim.lr_scaling = "none"
    if tiny:  # on CPU in minutes: the LR grid brackets the optimal loss at every batch size, so B* is fitted
        config.num_epochs = 2
        return with_sweep(
            config,
            space="batch_size: grid(16, 32, 64, 128, 256); optim.lr: grid(3e-3, 1e-2, 3e-2, 6e-2)",
            seeds=2,
            objective="final_val_loss",
            max_device_batch=64,
        )
    return with_sweep(
        config,
        space="batch_size: grid(32, 64, 128, 256, 512, 1024); optim.lr: loggrid(1e-5, 1e-2, 7)",
        seeds=3,
        max_device_batch=64,
        pruner="median",
    )  # 64 x 224 px ConvNeXt-T fits a 24 GB card
