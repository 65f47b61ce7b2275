"""The official ConvNeXt ImageNet-1k recipe (facebookresearch/ConvNeXt, 300 epochs).

    --config configs/imagenet_recipe.py:convnext_tiny --config.data.data_dir=/data/tfds

lr 4e-3 at batch 4096 (linear scaling to the actual batch), AdamW wd 0.05, cosine with 20
warmup epochs, label smoothing 0.1, mixup 0.8 / cutmix 1.0, RandAugment rand-m9-mstd0.5-inc1,
random erasing 0.25, drop_path by size (T 0.1, S 0.4, B 0.5, L 0.5). Data: TFDS imagenet2012
prepared as ArrayRecord under data.data_dir (or --config.data.source=folder:/path/to/imagenet).
EMA of the weights with decay 0.9999 is kept and evaluated alongside (val_*_ema).
Arguments: model=NAME (the default argument).
"""

from configs import common

DROP_PATH = {"tiny": 0.1, "small": 0.4, "base": 0.5, "large": 0.5, "xlarge": 0.5}


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, model="convnext_tiny")
    config = common.base_config()
    config.model.name = args.model
    config.model.drop_path_rate = DROP_PATH.get(args.model.split("_")[-1], 0.1)
    config.model.dtype = "bfloat16"
    config.model.num_classes = 1000
    config.num_epochs = 300
    config.batch_size = 4096
    config.label_smoothing = 0.1
    config.log_every = 100
    config.data.source = "tfds:imagenet2012"
    config.data.image_size = 224
    config.data.crop_pct = 0.875
    config.data.workers = 8
    config.data.augment.auto_augment = "rand-m9-mstd0.5-inc1"
    config.data.augment.re_prob = 0.25
    config.data.augment.mixup_alpha = 0.8
    config.data.augment.cutmix_alpha = 1.0
    config.optim.lr = 4e-3
    config.optim.lr_scaling = "linear"
    config.optim.lr_base_batch = 4096
    config.optim.weight_decay = 0.05
    config.optim.warmup_epochs = 20
    config.optim.clip_grad_norm = 0.0  # the reference recipe does not clip in fp32; set > 0 to clip
    config.ema_decay = 0.9999
    config.checkpoint.every_epochs = 5
    config.lock()
    return config
