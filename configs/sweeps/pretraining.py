"""FCMAE pre-training + fine-tuning vs supervised training from scratch, at equal total epochs,
for ConvNeXt V1 and V2 (docs/STUDY.md: "FCMAE self-supervised pre-training (V2)").

A point with fcmae.pretrain_epochs = K first pre-trains the encoder with FCMAE for K epochs on the
training images (no labels), then fine-tunes it for num_epochs - K; K = 0 trains from scratch for
num_epochs. Both arms share every other key (data, augmentation, fine-tuning optimiser).

    python -m convnext_jax.sweep run --config configs/sweeps/pretraining.py:tiny --workdir runs/pretrain_tiny --workers 2
    python -m convnext_jax.sweep run --config configs/sweeps/pretraining.py:folder:/data/x --workdir runs/pretrain \\
        --gpus 0,1,2,3,4,5,6,7 --gpus_per_worker 8
"""

from configs.common import study_base
from convnext_jax.sweep import with_sweep


def get_config(arg: str | None = None):
    config, tiny = study_base(arg)
    if tiny:  # the digits at 64 px (FCMAE needs patches of 32 px), 8 epochs in all, half of them pre-training
        config.num_epochs = 8
        config.data.image_size = 64
        config.model.depths = (1, 1, 2, 1)
        config.fcmae.decoder_dim = 64
        config.fcmae.lr = 2e-3
        config.fcmae.warmup_epochs = 1
        config.fcmae.norm_pix_loss = True
        config.fcmae.init = "convnext"  # the official init (std 1) is much slower to train at this size
        return with_sweep(
            config,
            space="model.name: choice(convnext_atto, convnextv2_atto); fcmae.pretrain_epochs: grid(0, 4)",
            seeds=3,
        )
    config.num_epochs = 100
    config.fcmae.norm_pix_loss = True
    return with_sweep(
        config, space="model.name: choice(convnext_tiny, convnextv2_tiny); fcmae.pretrain_epochs: grid(0, 50)", seeds=3
    )
