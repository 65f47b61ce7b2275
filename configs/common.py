"""What the config files share: big_vision-style argument parsing, and the recipes they start from.

A config file is `get_config(arg) -> ConfigDict`. `arg` is what follows the file name:
`--config configs/folder.py:path=/data/mine,size=128`. `parse_arg` turns it into typed values.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from convnext_jax.errors import ConfigError
from convnext_jax.train.config import base_config

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _convert(name: str, text: str, default: Any) -> Any:
    kind = type(default)
    try:
        if kind is bool:
            if text.lower() not in _TRUE + _FALSE:
                raise ValueError(text)
            return text.lower() in _TRUE
        return kind(text)
    except ValueError:
        raise ConfigError(f"config argument {name}={text!r}: expected a {kind.__name__}") from None


def parse_arg(arg: str | None, **spec: Any) -> ml_collections.ConfigDict:
    """'key=value,flag,...' -> a ConfigDict of the values in `spec` (name=default; the type comes
    from the default), as big_vision's `configs/common.py:parse_arg`.

    A lone word without '=' sets a bool key of that name to True, or else is the value of the
    first key (`lr.py:tiny` -> tiny=True; `lr.py:folder:/data/x` -> source='folder:/data/x').
    """
    values = ml_collections.ConfigDict(dict(spec))
    arg = (arg or "").strip()
    if not arg:
        return values
    if "," not in arg and "=" not in arg:
        arg = f"{arg}=true" if isinstance(spec.get(arg), bool) else f"{next(iter(spec))}={arg}"
    for item in filter(None, (part.strip() for part in arg.split(","))):
        name, eq, text = item.partition("=")
        if name not in spec:
            raise ConfigError(f"unknown config argument {name!r}; this config takes {', '.join(spec)} "
                              f"(e.g. {', '.join(f'{k}={v}' for k, v in spec.items())})")
        values[name] = _convert(name, text if eq else "true", spec[name])
    return values


def digits_recipe(model_name: str = "convnextv2_atto") -> ml_collections.ConfigDict:
    """A small ConvNeXt on the embedded digits (32 px) that trains on a CPU in about a minute."""
    config = base_config()
    config.num_epochs = 8
    config.target_accuracy = 0.9
    config.model.name = model_name
    config.model.depths = (1, 1, 2, 1)  # a tiny width keeps CPU runs short; scan keeps compile time flat
    config.model.dims = (32, 64, 96, 128)
    config.model.scan_blocks = True
    config.data.image_size = 32
    config.data.crop_pct = 1.0
    config.data.mean = (0.5, 0.5, 0.5)
    config.data.std = (0.5, 0.5, 0.5)
    config.data.augment.scale = (0.6, 1.0)
    config.data.augment.hflip = 0.0  # digits are not mirror-symmetric
    config.optim.lr = 2e-3
    config.optim.weight_decay = 0.05
    config.optim.warmup_epochs = 1
    return config


def seed_baseline(source: str) -> ml_collections.ConfigDict:
    """The study's baseline (docs/STUDY.md step 1): ConvNeXt-T, AdamW lr 1e-4, wd 0.01, cosine
    with 5 warmup epochs, drop_path 0.1, label smoothing 0.1, clip 1.0, bf16, total batch 64."""
    config = base_config()
    config.data.source = source
    config.num_epochs = 100
    config.batch_size = 64
    config.label_smoothing = 0.1
    config.model.name = "convnext_tiny"
    config.model.drop_path_rate = 0.1
    config.model.dtype = "bfloat16"
    config.optim.name = "adamw"
    config.optim.lr = 1e-4
    config.optim.weight_decay = 0.01
    config.optim.schedule = "cosine"
    config.optim.warmup_epochs = 5
    config.optim.clip_grad_norm = 1.0
    if source == "embedded:digits":  # the recipe anywhere: the digits at 32 px, unflipped
        config.data.image_size = 32
        config.data.crop_pct = 1.0
        config.data.augment.hflip = 0.0
    return config


def tiny_study_base() -> ml_collections.ConfigDict:
    """The baseline's recipe shrunk to CPU minutes for the study configs' `tiny` mode: a tiny
    ConvNeXt-V2 on the digits at 32 px, fp32, 3 epochs."""
    config = digits_recipe("convnextv2_atto")
    config.num_epochs = 3
    config.batch_size = 64
    config.log_every = 100
    config.target_accuracy = 0.8
    config.model.depths = (1, 1, 1, 1)
    config.model.dims = (16, 24, 32, 48)
    config.optim.clip_grad_norm = 1.0
    config.checkpoint.keep = 1
    return config


def study_base(arg: str | None) -> tuple[ml_collections.ConfigDict, bool]:
    """(the unlocked base training config of a study, whether it is the tiny CPU version).

    The study configs take `tiny` (the default), or the data source of the real study
    (`folder:/path`, `tfds:name`) on the seed baseline with one checkpoint kept per trial.
    """
    args = parse_arg(arg, source="", tiny=False)
    if args.tiny or not args.source:
        return tiny_study_base(), True
    config = seed_baseline(args.source)
    config.checkpoint.keep = 1
    return config, False
