"""The study's baseline (shared/docs/STUDY.md step 1): AdamW lr 1e-4, wd 0.01, cosine with 5
warmup epochs, drop_path 0.1, label smoothing 0.1, clip 1.0, bf16, total batch 64.

The argument is the data source, e.g.
    --config configs/seed_baseline.py:folder:/data/mydataset
    --config configs/seed_baseline.py:tfds:imagenet2012 --config.data.data_dir=/data/tfds
Default: the embedded digits (32 px), so the recipe runs anywhere.
"""

import ml_collections

from convnext_jax.train.defaults import seed_baseline_config


def get_config(arg: str = "embedded:digits") -> ml_collections.ConfigDict:
    config = seed_baseline_config(arg)
    if arg == "embedded:digits":
        config.data.image_size = 32
        config.data.crop_pct = 1.0
        config.data.augment.hflip = 0.0
    config.lock()
    return config
