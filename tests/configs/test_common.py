"""The shipped config files and what they share: every recipe loads, validates and is locked;
arguments parse like big_vision's, with clear errors."""

import importlib.util
import os

import pytest

from configs import common
from convnext_jax.errors import ConfigError
from convnext_jax.train import config as train_config

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "name, arg",
    [
        ("seed_baseline", "folder:/data/x"),
        ("imagenet_recipe", "convnext_small"),
        ("finetune", "/w.pth"),
        ("embedded_digits", "v1"),
        ("embedded_digits", None),
        ("folder", "/data/x"),
        ("finetune", "weights=/w.pth,model=convnext_atto"),
    ],
)
def test_shipped_configs_load_validate_and_are_locked(name, arg):
    config = load(name).get_config(arg)
    with pytest.raises(AttributeError):
        config.not_a_key = 1
    train_config.validate(config, check_paths=False)


def test_config_arguments():
    assert load("embedded_digits").get_config("v1").model.name == "convnext_atto"
    assert load("imagenet_recipe").get_config("convnext_small").model.drop_path_rate == 0.4
    finetune = load("finetune").get_config("weights=/w.pth,model=convnext_atto")
    assert finetune.model.init_from == "/w.pth" and finetune.model.name == "convnext_atto"
    assert load("finetune").get_config("/w.pth").model.name == ""  # the checkpoint's architecture
    assert load("seed_baseline").get_config("folder:/data/x").data.source == "folder:/data/x"


def test_parse_arg_types_lone_values_and_errors():
    args = common.parse_arg("size=64,tiny,lr=0.5", source="", size=32, tiny=False, lr=1.0)
    assert (args.source, args.size, args.tiny, args.lr) == ("", 64, True, 0.5)
    assert common.parse_arg("tiny", source="", tiny=False).tiny is True
    assert common.parse_arg("folder:/a/b", source="", tiny=False).source == "folder:/a/b"
    assert common.parse_arg(None, source="x").source == "x"
    args = common.parse_arg("runs/pre,tiny", weights="", model="", tiny=False)  # the first value, then a flag
    assert (args.weights, args.tiny) == ("runs/pre", True)
    with pytest.raises(
        ConfigError,
        match=r"unknown config argument 'sise' \(did you mean 'size'\?\); this config "
        "takes source, size",
    ):
        common.parse_arg("sise=3", source="", size=32)
    with pytest.raises(ConfigError, match=r"unknown config argument 'tny' \(did you mean 'tiny'\?\)"):
        common.parse_arg("tny", source="", tiny=False)
    with pytest.raises(ConfigError, match="size='big': expected an integer"):
        common.parse_arg("size=big", source="", size=32)
    with pytest.raises(ConfigError, match="takes v1 or v2"):
        load("embedded_digits").get_config("v3")
