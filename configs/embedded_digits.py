"""Default job: a small ConvNeXt on the embedded real dataset (sklearn digits), CPU in about a minute.

    python -m convnext_jax.main --config configs/embedded_digits.py --workdir runs/digits
    python -m convnext_jax.main --config configs/embedded_digits.py:v1 --workdir runs/digits_v1 --config.num_epochs=3
"""

import ml_collections

from convnext_jax.train.defaults import base_config


def get_config(arg: str = "v2") -> ml_collections.ConfigDict:
    config = base_config()
    config.num_epochs = 8
    config.target_accuracy = 0.9
    config.model.name = "convnextv2_atto" if arg == "v2" else "convnext_atto"
    # A tiny width keeps CPU runs short; scan keeps compile time flat.
    config.model.options.update({"depths": (1, 1, 2, 1), "dims": (32, 64, 96, 128),
                                 "scan_blocks": True})
    config.data.image_size = 32
    config.data.crop_pct = 1.0
    config.data.mean = (0.5, 0.5, 0.5)
    config.data.std = (0.5, 0.5, 0.5)
    config.data.augment.scale = (0.6, 1.0)
    config.data.augment.hflip = 0.0  # digits are not mirror-symmetric
    config.optim.lr = 2e-3
    config.optim.weight_decay = 0.05
    config.optim.warmup_epochs = 1
    config.lock()
    return config
