"""Fine-tune from converted PyTorch weights (timm/official .pth/.safetensors or a convnext_jax
weights directory), with a fresh classifier for the new class count.

    --config configs/finetune.py:/weights/convnext_tiny.pth --config.data.source=folder:/data/mine
"""

import ml_collections

from convnext_jax.train.defaults import base_config


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    config = base_config()
    config.model.name = "convnext_tiny"
    config.model.init_from = arg
    config.model.reset_head = True
    config.model.drop_path_rate = 0.1
    config.num_epochs = 30
    config.batch_size = 64
    config.optim.lr = 5e-5
    config.optim.weight_decay = 0.05
    config.optim.warmup_epochs = 0
    config.optim.min_lr = 1e-6
    config.optim.layer_decay = 0.8  # the ConvNeXt V2 fine-tuning recipe's value for tiny/base sizes
    config.data.augment.auto_augment = "rand-m9-mstd0.5-inc1"
    config.data.augment.re_prob = 0.25
    config.lock()
    return config
