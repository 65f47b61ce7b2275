"""Flax parameter trees in our own layout (nested dicts keyed by the model's parameter paths):
flatten, load into a model with every path and shape checked, and recover the architecture."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from flax import nnx

from convnext_jax.models.config import ConvNeXtConfig
from convnext_jax.models.fcmae import FCMAEConfig
from convnext_jax.models.naming import FCMAE_ONLY
from convnext_jax.models.variants import model_config
from convnext_jax.weights.pytorch import WeightImportError, assign, describe, format_problems, variant_name

Path = tuple[str, ...]
HEAD_CLASSIFIER = "head_fc"


def flatten(tree: Any, prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    """(path of string keys, leaf) pairs; nnx.State's {'value': x} wrappers are unwrapped."""
    if isinstance(tree, Mapping):
        if set(tree) == {"value"} and not isinstance(tree["value"], Mapping):
            yield prefix, tree["value"]
            return
        for key, value in tree.items():
            yield from flatten(value, prefix + (str(key),))
    elif isinstance(tree, nnx.State):
        yield from flatten(nnx.to_pure_dict(tree), prefix)
    else:
        yield prefix, tree


def model_params(model: Any) -> dict[Path, nnx.Variable]:
    """The model's parameters by string path."""
    return {tuple(str(k) for k in path): variable for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def is_fcmae_tree(tree: Any) -> bool:
    """The parameters of an FCMAE model (pre-training)."""
    return any(path[0] == "mask_token" for path, _ in flatten(tree))


def load_tree(model: Any, tree: Any, *, reset_head: bool = False, source: str = "the weights") -> list[str]:
    """Load a parameter tree of our layout into `model` in place, checking every path and shape
    (nothing is loaded when anything does not fit). `reset_head` keeps the model's fresh
    classifier. An FCMAE tree loads into a classifier as the official fine-tuning does: its encoder
    only, the classifier and the final norm fresh (`reset_head` required). Returns the loaded paths."""
    wanted = model_params(model)
    given = dict(flatten(tree))
    encoder_only = is_fcmae_tree(tree) and not any(path[0] == "mask_token" for path in wanted)
    if encoder_only:
        if not reset_head:
            raise WeightImportError(
                f"{source} are FCMAE (pre-training) weights: no classifier and no final norm. Load "
                "them into a classifier with reset_head=True (config model.reset_head)"
            )
        given = {p: v for p, v in given.items() if p[0] not in FCMAE_ONLY}

    def skipped(path: Path) -> bool:
        return (reset_head and path[0] == HEAD_CLASSIFIER) or (encoder_only and path[0] == "head_norm")

    missing = ["/".join(p) for p in wanted if p not in given and not skipped(p)]
    unexpected = ["/".join(p) for p in given if p not in wanted and not skipped(p)]
    mismatched = [
        f"{'/'.join(p)}: weights {tuple(np.shape(v))}, model {tuple(wanted[p][...].shape)}"
        for p, v in given.items()
        if p in wanted and not skipped(p) and tuple(np.shape(v)) != tuple(wanted[p][...].shape)
    ]
    if missing or unexpected or mismatched:
        hint = ""
        if any(m.startswith(HEAD_CLASSIFIER) for m in missing + unexpected + mismatched):
            hint = "\nThe classifier does not match (different num_classes?): pass reset_head=True for a fresh head."
        else:
            try:
                hint = f"\n{source} hold {describe(infer_config(tree))}."
            except WeightImportError:
                pass
        raise WeightImportError(
            f"{source} do not fit the model {describe(model.cfg)}:\n"
            f"{format_problems(sorted(missing), sorted(unexpected), sorted(mismatched))}{hint}"
        )
    loaded = []
    for path, value in given.items():
        if not skipped(path):
            assign(wanted[path], np.asarray(value))
            loaded.append("/".join(path))
    return loaded


def infer_config(tree: Any) -> ConvNeXtConfig:
    """The architecture of a parameter tree of our layout (a named variant keeps its options)."""
    shapes = {path: tuple(np.shape(value)) for path, value in flatten(tree)}
    try:
        stem = shapes[("stem_conv", "kernel")]  # (p, p, in, dims[0])
        depths, dims, i = [], [], 0
        while ("stages", str(i), "blocks", "conv_dw", "kernel") in shapes:
            depth, k, _, _, dim = shapes[("stages", str(i), "blocks", "conv_dw", "kernel")]
            depths.append(depth)
            dims.append(dim)
            i += 1
        hidden = shapes[("stages", "0", "blocks", "fc1", "kernel")][-1]
        head = shapes.get((HEAD_CLASSIFIER, "kernel"))
        cfg = ConvNeXtConfig(
            depths=tuple(depths),
            dims=tuple(dims),
            kernel_size=k,
            patch_size=stem[0],
            in_chans=stem[2],
            mlp_ratio=hidden / dims[0],
            use_grn=("stages", "0", "blocks", "grn", "weight") in shapes,
            ls_init_value=1e-6 if ("stages", "0", "blocks", "gamma") in shapes else None,
            num_classes=head[-1] if head else 0,
        )
    except (KeyError, ValueError, UnboundLocalError, IndexError) as e:
        raise WeightImportError(f"not ConvNeXt parameters (no {e})") from e
    name = variant_name(cfg)
    return model_config(name, num_classes=cfg.num_classes) if name else cfg


def infer_fcmae_config(tree: Any) -> Any:
    """The FCMAEConfig of an FCMAE parameter tree of our layout."""
    shapes = {path: tuple(np.shape(value)) for path, value in flatten(tree)}
    encoder = infer_config({k: v for k, v in tree.items() if k not in FCMAE_ONLY})
    decoder_dim = shapes[("proj", "kernel")][-1]
    conv = shapes.get(("decoder", "blocks", "conv_dw", "kernel"))
    patch = int(round((shapes[("pred", "kernel")][-1] / encoder.in_chans) ** 0.5))
    return FCMAEConfig(
        encoder=encoder.replace(num_classes=0),
        decoder_dim=decoder_dim,
        decoder_depth=conv[0] if conv else 0,
        patch_size=patch,
    )
