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
        wanted = {bool: "true or false", int: "an integer", float: "a number"}.get(kind, f"a {kind.__name__}")
        raise ConfigError(f"config argument {name}={text!r}: expected {wanted}") from None


def parse_arg(arg: str | None, **spec: Any) -> ml_collections.ConfigDict:
    """'key=value,flag,...' -> a ConfigDict of the values in `spec` (name=default; the type comes
    from the default), as big_vision's `configs/common.py:parse_arg`.

    A lone word without '=' sets a bool key of that name to True, or else (first item only) is the
    value of the first key (`lr.py:tiny` -> tiny=True; `lr.py:folder:/data/x` -> source='folder:/data/x';
    `finetune.py:runs/pre,tiny` -> weights='runs/pre', tiny=True). A word close to a flag's name is
    reported as a misspelling (`lr.py:tny`).
    """
    values = ml_collections.ConfigDict(dict(spec))
    arg = (arg or "").strip()
    if not arg:
        return values
    items = [part.strip() for part in arg.split(",")] if "=" in arg or "," in arg else [arg]
    for position, item in enumerate(filter(None, items)):
        name, eq, text = item.partition("=")
        if not eq and isinstance(spec.get(name), bool):  # a lone flag: `tiny`
            text = "true"
        elif not eq and position == 0 and not _looks_like_a_misspelt_key(name, spec):  # the first key's value
            name, text = next(iter(spec)), item
        elif not eq:
            name, text = item, "true"
        if name not in spec:
            import difflib

            close = difflib.get_close_matches(name, list(spec), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown config argument {name!r}{hint}; this config takes {', '.join(spec)} "
                f"(e.g. {', '.join(f'{k}={v}' for k, v in spec.items())})"
            )
        values[name] = _convert(name, text, spec[name])
    return values


def _looks_like_a_misspelt_key(word: str, spec: dict[str, Any]) -> bool:
    """A lone word close to a flag's name (`tny` for `tiny`): reported, not taken as the first key's value."""
    import difflib

    flags = [k for k, v in spec.items() if isinstance(v, bool)]
    return bool(difflib.get_close_matches(word, flags, n=1, cutoff=0.75)) and "/" not in word and ":" not in word


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


def fcmae_recipe(model_name: str = "convnextv2_base", source: str = "tfds:imagenet2012") -> ml_collections.ConfigDict:
    """The official FCMAE pre-training recipe (see configs/fcmae_pretrain.py)."""
    config = base_config()
    config.task = "fcmae"
    config.model.name = model_name
    config.model.dtype = "bfloat16"
    config.data.source = source
    config.data.image_size = 224
    config.data.workers = 8
    config.data.augment.scale = (0.2, 1.0)
    config.data.augment.hflip = 0.5
    config.num_epochs = 800
    config.batch_size = 4096
    config.label_smoothing = 0.0
    config.log_every = 100
    config.fcmae.norm_pix_loss = True
    config.optim.name = "adamw"
    config.optim.b1, config.optim.b2 = 0.9, 0.95
    config.optim.lr = 1.5e-4
    config.optim.lr_scaling = "linear"
    config.optim.lr_base_batch = 256
    config.optim.weight_decay = 0.05
    config.optim.warmup_epochs = 40
    config.optim.min_lr = 0.0
    config.optim.clip_grad_norm = 0.0
    config.checkpoint.every_epochs = 10
    return config


def fcmae_tiny() -> ml_collections.ConfigDict:
    """The recipe on a CPU in minutes: the digits at 64 px (2 x 2 patches of 32 px), a small
    ConvNeXt-V2, fp32, 6 epochs, a shorter warmup, the classifier's initialisation (the official
    one — std 1 weights — trains much slower at this size: val loss 0.69 vs 0.36 after 2 epochs)."""
    config = fcmae_recipe("convnextv2_atto", "embedded:digits")
    config.model.depths, config.model.dims = (1, 1, 2, 1), (32, 64, 96, 128)
    config.model.scan_blocks = True
    config.model.dtype = "float32"
    config.data.image_size = 64
    config.data.crop_pct = 1.0
    config.data.workers = 0
    config.data.mean = config.data.std = (0.5, 0.5, 0.5)
    config.data.augment.scale = (0.6, 1.0)
    config.data.augment.hflip = 0.0  # digits are not mirror-symmetric
    config.fcmae.decoder_dim = 64
    config.fcmae.init = "convnext"
    config.num_epochs = 6
    config.batch_size = 64
    config.log_every = 10
    config.optim.lr_scaling = "none"
    config.optim.lr = 2e-3
    config.optim.warmup_epochs = 1
    config.checkpoint.every_epochs = 1
    config.checkpoint.keep = 1
    return config


def fcmae_finetune(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The official ConvNeXt-V2 fine-tuning defaults for FCMAE weights (`main_finetune.py`,
    TRAINING.md): the head drawn with std 2e-5 and scaled by 0.001 (head_init_scale 1e-6 of our
    std 0.02), layer decay 0.9, EMA 0.9999, lr 2e-4 x batch / 256, weight decay 0.05, drop path
    0.1, label smoothing 0.2, RandAugment, random erasing 0.25, no mixup/cutmix, no warmup."""
    config.model.reset_head = True
    config.model.head_init_scale = 1e-6
    config.model.drop_path_rate = 0.1
    config.optim.layer_decay = 0.9
    config.optim.lr = 2e-4
    config.optim.lr_scaling = "linear"
    config.optim.lr_base_batch = 256
    config.optim.weight_decay = 0.05
    config.optim.warmup_epochs = 0
    config.ema_decay = 0.9999
    config.label_smoothing = 0.2
    config.data.augment.auto_augment = "rand-m9-mstd0.5-inc1"
    config.data.augment.re_prob = 0.25
    config.data.augment.mixup_alpha = config.data.augment.cutmix_alpha = 0.0
    return config


def finetune_tiny(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The fine-tuning recipe shrunk for the CPU demo after `fcmae_pretrain.py:tiny`: the digits at
    64 px as in the pre-training, 4 epochs (88 steps) at lr 2e-3 (the official 2e-4 x batch / 256
    takes hundreds of epochs at this size), no EMA (an EMA of 0.9999 barely moves in 88 steps), no
    RandAugment / random erasing / drop path (a model this small underfits the digits with them)."""
    config.data.source = "embedded:digits"
    config.data.image_size = 64
    config.data.crop_pct = 1.0
    config.data.mean = config.data.std = (0.5, 0.5, 0.5)
    config.data.augment.scale = (0.6, 1.0)
    config.data.augment.hflip = 0.0  # digits are not mirror-symmetric
    config.data.augment.auto_augment = ""
    config.data.augment.re_prob = 0.0
    config.model.drop_path_rate = 0.0
    config.num_epochs = 4
    config.label_smoothing = 0.1
    config.ema_decay = 0.0
    config.optim.lr = 2e-3
    config.optim.lr_scaling = "none"
    config.optim.min_lr = 0.0
    config.checkpoint.keep = 1
    return config


def is_fcmae_weights(path: str) -> bool:
    """Whether `path` holds FCMAE (pre-training) weights: an official FCMAE checkpoint, an FCMAE
    weights directory or a pre-training workdir. False when it cannot tell (the run's validation
    reports a missing path)."""
    import os

    from convnext_jax.errors import UserError

    path = os.path.expanduser(path)
    if not path or not os.path.exists(path):
        return False
    from convnext_jax.weights import source_config

    try:
        return hasattr(source_config(path), "encoder")
    except UserError:
        return False
