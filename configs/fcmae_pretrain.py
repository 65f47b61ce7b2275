"""FCMAE pre-training (ConvNeXt-V2's fully convolutional masked autoencoder) with the official
recipe (facebookresearch/ConvNeXt-V2 `main_pretrain.py`, TRAINING.md): AdamW betas (0.9, 0.95),
weight decay 0.05 with the official rule (decay on every >= 2-D tensor but biases), lr = 1.5e-4 x
batch / 256, 40 warmup epochs then cosine to 0, 800 epochs, effective batch 4096, no clipping;
RandomResizedCrop (0.2, 1) + flip; mask ratio 0.6 of 32-px patches; decoder 1 x 512; loss on
per-patch normalised pixels (`norm_pix_loss`, the official default).

    python -m convnext_jax.main --config configs/fcmae_pretrain.py:convnextv2_atto --workdir runs/fcmae_atto \\
        --config.data.data_dir=/data/tfds
    python -m convnext_jax.main --config configs/fcmae_pretrain.py:tiny --workdir runs/fcmae_tiny   # CPU, minutes

Then fine-tune: `--config configs/finetune.py:runs/fcmae_atto` (the official fine-tuning defaults).
Arguments: model=NAME (the default argument; convnextv2_base), source=DATA (tfds:imagenet2012),
tiny (the embedded digits at 64 px, a small ConvNeXt-V2, 6 epochs: the same run on a CPU).
"""

from configs import common


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, model="convnextv2_base", source="tfds:imagenet2012", tiny=False)
    config = common.fcmae_recipe(args.model, args.source) if not args.tiny else common.fcmae_tiny()
    config.lock()
    return config
