"""Save and load a model's parameters as an orbax checkpoint plus its config (JSON).

Layout of a weights directory:
    DIR/config.json   the ConvNeXtConfig fields
    DIR/params/       orbax StandardCheckpointer tree of nnx.Param values
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import jax
import orbax.checkpoint as ocp
from flax import nnx

from convnext_jax.models import ConvNeXt, ConvNeXtConfig, build_model

CONFIG_FILE = "config.json"
PARAMS_DIR = "params"


def save_model(model: ConvNeXt, directory: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Write `model`'s config and parameters to `directory` (blocking until the save is done)."""
    directory = os.path.abspath(os.fspath(directory))
    if os.path.exists(directory):
        if not overwrite:
            raise FileExistsError(f"{directory} exists; pass overwrite=True to replace it")
        shutil.rmtree(directory)
    os.makedirs(directory)
    with open(os.path.join(directory, CONFIG_FILE), "w") as f:
        json.dump(dataclasses.asdict(model.cfg), f, indent=2)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(directory, PARAMS_DIR), params)
    checkpointer.wait_until_finished()


def load_config(directory: str | os.PathLike) -> ConvNeXtConfig:
    """Read the ConvNeXtConfig saved next to the parameters."""
    path = os.path.join(os.fspath(directory), CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: {directory} is not a convnext_jax weights directory "
                                "(create one with `python -m convnext_jax.convert SRC.pth DIR`)")
    with open(path) as f:
        return ConvNeXtConfig(**json.load(f))


def load_model(directory: str | os.PathLike, **config_overrides) -> ConvNeXt:
    """Rebuild the saved model; `config_overrides` may change execution options (dtype, remat, ...)."""
    directory = os.path.abspath(os.fspath(directory))
    cfg = load_config(directory)
    if config_overrides:
        cfg = cfg.replace(**config_overrides)
    model = build_model(cfg)
    state = nnx.state(model, nnx.Param)
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, nnx.to_pure_dict(state))
    params = ocp.StandardCheckpointer().restore(os.path.join(directory, PARAMS_DIR), target)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(model, state)
    return model
