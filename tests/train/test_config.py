"""The training config schema: every key declared with its default and meaning, validation that
lists every problem with the closest valid name, before anything is built."""

import dataclasses

import pytest

from configs import embedded_digits
from convnext_jax.errors import ConfigError
from convnext_jax.models.config import ConvNeXtConfig
from convnext_jax.ops import OPTION
from convnext_jax.train import config as train_config


def test_config_typo_names_the_closest_key():
    config = embedded_digits.get_config()
    with pytest.raises(AttributeError, match="Did you mean.*lr"):
        config.optim.lrr = 0.1


def test_every_model_option_is_a_declared_key():
    """`--config.model.norm_impl=xla` etc. work on any config: every execution option of the
    model is a key of the base config with ConvNeXtConfig's default (no open options bag)."""
    fields = {f.name: f.default for f in dataclasses.fields(ConvNeXtConfig)}
    config = embedded_digits.get_config()
    for name in ("remat", "remat_segments", "head_drop_rate", "head_init_scale", *OPTION.values()):
        assert train_config.SCHEMA["model"][name].default == fields[name], name
        assert name in config.model
    assert config.model.scan_blocks is True and config.model.dims == (32, 64, 96, 128)  # the config's own values
    config.model.norm_impl = "xla"
    train_config.validate(config)
    config.model.norm_impl = "fast"
    with pytest.raises(ConfigError, match="model.norm_impl must be one of auto, xla, ffi; got 'fast'"):
        train_config.validate(config)


def test_validation_lists_every_problem_with_the_closest_name(tmp_path):
    config = train_config.base_config()
    config.batch_size = 0
    config.model.dtype = "fp8"
    config.model.name = "convnext_tiy"
    config.optim.schedule = "cosin"
    config.optim.layer_decay = 1.5
    config.data.source = f"folder:{tmp_path}/missing"
    config.model.init_from = str(tmp_path / "nope.pth")
    with pytest.raises(ConfigError) as info:
        train_config.validate(config)
    message = str(info.value)
    for expected in (
        "batch_size must be >= 1; got 0",
        "model.dtype must be one of float32, bfloat16, float16",
        "did you mean 'convnext_tiny'",
        "did you mean 'cosine'",
        "optim.layer_decay must be in",
        "missing does not exist",
        "nope.pth does not exist",
        "--show_config",
    ):
        assert expected in message, (expected, message)
    assert "Traceback" not in message


def test_cross_key_rules():
    config = train_config.base_config()
    config.batch_size, config.optim.grad_accum_steps = 64, 3
    config.data.augment.scale = (0.9, 0.5)
    config.data.augment.auto_augment = "rand-m9-foo"
    config.model.name, config.model.init_from = "", ""
    with pytest.raises(ConfigError) as info:
        train_config.validate(config)
    message = str(info.value)
    assert "not divisible by optim.grad_accum_steps 3" in message and "0 < lo <= hi <= 1" in message
    assert "unknown RandAugment option" in message and "model.name is empty" in message
    config = train_config.base_config()
    config.batch_size, config.optim.grad_accum_steps, config.data.augment.mixup_alpha = 66, 2, 0.8
    with pytest.raises(ConfigError, match=r"batch_size / optim.grad_accum_steps \(33\) must be even"):
        train_config.validate(config)
    config = train_config.base_config()
    config.device_memory_gb, config.optim.grad_accum_steps = 24.0, 2
    with pytest.raises(ConfigError, match="device_memory_gb derives optim.grad_accum_steps"):
        train_config.validate(config)
    config = train_config.base_config()
    config.model.depths = (1, 1, 1)  # the variant's dims have 4 stages
    with pytest.raises(ConfigError, match="equal length"):
        train_config.validate(config)


def test_describe_lists_every_key_with_its_meaning():
    config = embedded_digits.get_config()
    text = train_config.describe(config)
    for dotted, _key in __import__("convnext_jax.schema", fromlist=["walk"]).walk(train_config.SCHEMA):
        assert f"\n{dotted} = " in "\n" + text, dotted
    assert "model.scan_blocks = True  (default False)" in text and "(may change when resuming)" in text
