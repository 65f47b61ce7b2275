"""Default job: a small ConvNeXt-V2 on the embedded real dataset (sklearn digits), CPU in minutes.

    python -m convnext_jax.main --config configs/embedded_digits.py --workdir runs/digits
    python -m convnext_jax.main --config configs/embedded_digits.py:v1 --workdir runs/digits_v1 --config.num_epochs=3
"""

import ml_collections


def get_config(arg: str = "v2") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.num_epochs = 8
    config.batch_size = 64
    config.label_smoothing = 0.1
    config.log_every = 10
    config.target_accuracy = 0.9  # epochs-to-target is reported in summary.json

    config.model = ml_collections.ConfigDict()
    config.model.name = "convnextv2_atto" if arg == "v2" else "convnext_atto"
    config.model.num_classes = 0  # 0: take it from the dataset
    config.model.drop_path_rate = 0.0
    config.model.dtype = "float32"
    # Any other ConvNeXtConfig field; a tiny width keeps CPU runs short.
    config.model.options = ml_collections.ConfigDict({"depths": (1, 1, 2, 1), "dims": (32, 64, 96, 128),
                                                      "scan_blocks": True})

    config.data = ml_collections.ConfigDict()
    config.data.source = "embedded:digits"
    config.data.data_dir = ""
    config.data.image_size = 32
    config.data.crop_pct = 1.0
    config.data.workers = 0
    config.data.normalize = True
    config.data.mean = (0.5, 0.5, 0.5)
    config.data.std = (0.5, 0.5, 0.5)
    config.data.augment = ml_collections.ConfigDict()
    config.data.augment.scale = (0.6, 1.0)
    config.data.augment.hflip = 0.0  # digits are not mirror-symmetric
    config.data.augment.auto_augment = ""
    config.data.augment.color_jitter = 0.0
    config.data.augment.re_prob = 0.0
    config.data.augment.mixup_alpha = 0.0
    config.data.augment.cutmix_alpha = 0.0
    config.data.augment.mixup_prob = 1.0
    config.data.augment.mixup_switch_prob = 0.5

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "adamw"
    config.optim.lr = 2e-3
    config.optim.lr_scaling = "none"
    config.optim.lr_base_batch = 256
    config.optim.b1 = 0.9
    config.optim.b2 = 0.999
    config.optim.eps = 1e-8
    config.optim.momentum = 0.9
    config.optim.weight_decay = 0.05
    config.optim.schedule = "cosine"
    config.optim.warmup_epochs = 1
    config.optim.warmup_steps = 0
    config.optim.min_lr = 1e-6
    config.optim.clip_grad_norm = 1.0
    config.optim.grad_accum_steps = 1

    config.checkpoint = ml_collections.ConfigDict()
    config.checkpoint.every_epochs = 1
    config.checkpoint.keep = 2

    config.lock()
    return config
