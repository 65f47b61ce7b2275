"""The study's baseline (docs/STUDY.md step 1): AdamW lr 1e-4, wd 0.01, cosine with 5
warmup epochs, drop_path 0.1, label smoothing 0.1, clip 1.0, bf16, total batch 64.

The argument is the data source, e.g.
    --config configs/seed_baseline.py:folder:/data/mydataset
    --config configs/seed_baseline.py:tfds:imagenet2012 --config.data.data_dir=/data/tfds
Default: the embedded digits (32 px), so the recipe runs anywhere.
"""

from configs import common


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, source="embedded:digits")
    config = common.seed_baseline(args.source)
    config.lock()
    return config
