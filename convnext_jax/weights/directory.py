"""Our own weights directory: a model's parameters as an orbax checkpoint plus its config.

    DIR/config.json   the ConvNeXtConfig fields ({"fcmae": {..., "encoder": {...}}} for an FCMAE model)
    DIR/params/       orbax StandardCheckpointer tree of the parameters (the model's own paths)
    DIR/evaluation.json  optional: how the weights were evaluated (data, image size, crop, normalisation,
                      classes, model name), written by `average`; `validate DIR` uses it

Loading needs no PyTorch: the tree goes straight into the model, every path and shape checked.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Any

import orbax.checkpoint as ocp
from flax import nnx

from convnext_jax.models.config import ConvNeXtConfig
from convnext_jax.models.fcmae import FCMAEConfig, is_fcmae_config
from convnext_jax.models.registry import build_any
from convnext_jax.weights.pytorch import WeightsExistError, WeightsNotFoundError
from convnext_jax.weights.tree import load_tree

CONFIG_FILE = "config.json"
PARAMS_DIR = "params"
EVALUATION_FILE = "evaluation.json"


def is_weights_dir(path: str | os.PathLike) -> bool:
    path = os.fspath(path)
    return os.path.isfile(os.path.join(path, CONFIG_FILE)) and os.path.isdir(os.path.join(path, PARAMS_DIR))


def save_weights(
    model: Any, directory: str | os.PathLike, *, overwrite: bool = False, evaluation: dict[str, Any] | None = None
) -> None:
    """Write `model`'s config and parameters to `directory` (blocking until the save is done), and
    `evaluation` (how to evaluate them: the preprocessing they were trained with) when given."""
    directory = os.path.abspath(os.fspath(directory))
    if os.path.exists(directory):
        if not overwrite:
            raise WeightsExistError(f"{directory} exists; pass overwrite=True (--force) to replace it")
        shutil.rmtree(directory)
    os.makedirs(directory)
    record = dataclasses.asdict(model.cfg)
    with open(os.path.join(directory, CONFIG_FILE), "w") as f:
        json.dump({"fcmae": record} if "encoder" in record else record, f, indent=2)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(directory, PARAMS_DIR), nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    checkpointer.wait_until_finished()
    if evaluation is not None:
        with open(os.path.join(directory, EVALUATION_FILE), "w") as f:
            json.dump(evaluation, f, indent=2)


def load_evaluation(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The evaluation record saved with the weights (None when there is none)."""
    path = os.path.join(os.fspath(directory), EVALUATION_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def load_config(directory: str | os.PathLike) -> Any:
    """The model config saved next to the parameters: a ConvNeXtConfig, or an FCMAEConfig."""
    path = os.path.join(os.fspath(directory), CONFIG_FILE)
    if not is_weights_dir(directory):
        raise WeightsNotFoundError(
            f"{directory} is not a convnext_jax weights directory (no {CONFIG_FILE} and "
            f"{PARAMS_DIR}/; create one with `python -m convnext_jax.convert SRC.pth DIR`)"
        )
    with open(path) as f:
        record = json.load(f)
    if "fcmae" in record:
        fields = dict(record["fcmae"])
        return FCMAEConfig(encoder=_convnext_config(fields.pop("encoder")), **fields)
    return _convnext_config(record)


def _convnext_config(fields: dict[str, Any]) -> ConvNeXtConfig:
    return ConvNeXtConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def read_params(directory: str | os.PathLike) -> dict[str, Any]:
    """The saved parameter tree (host arrays)."""
    load_config(directory)  # a clear error for anything else
    return ocp.StandardCheckpointer().restore(os.path.join(os.path.abspath(os.fspath(directory)), PARAMS_DIR))


def load_weights(directory: str | os.PathLike, **config_overrides: Any) -> Any:
    """Rebuild the saved model; `config_overrides` may change execution options (dtype, remat, ...)."""
    cfg = load_config(directory)
    if config_overrides:  # execution options: an FCMAE's are its encoder's
        cfg = (
            cfg.replace(encoder=cfg.encoder.replace(**config_overrides))
            if is_fcmae_config(cfg)
            else cfg.replace(**config_overrides)
        )
    model = build_any(cfg)
    load_tree(model, read_params(directory), source=f"the weights in {directory}")
    return model
