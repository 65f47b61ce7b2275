"""Pretrained weights from wherever they are: PyTorch files, our weights directory (no torch),
a training workdir's checkpoint; the architecture each holds."""

import subprocess
import sys

import jax
import numpy as np
import pytest
import timm
import torch
from flax import nnx

import convnext_jax as cj
from convnext_jax.train.checkpoint import Checkpointer
from convnext_jax.weights import WeightImportError, load_pretrained, read_checkpoint_params, source_config, source_kind

SMALL = dict(depths=(1, 1, 2, 1), dims=(16, 24, 32, 48))


def _params(model):
    return {tuple(map(str, k)): np.asarray(v[...]) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def test_pytorch_file_and_weights_dir(tmp_path):
    reference = timm.create_model("convnext_atto", num_classes=4)
    torch.save(reference.state_dict(), tmp_path / "a.pth")
    assert source_kind(tmp_path / "a.pth") == "pytorch"
    assert source_config(tmp_path / "a.pth") == cj.model_config("convnext_atto", num_classes=4)
    model = cj.create_model("convnext_atto", num_classes=4)
    assert "initialised from" in load_pretrained(model, str(tmp_path / "a.pth"))
    cj.save_weights(model, tmp_path / "w")
    assert source_kind(tmp_path / "w") == "weights_dir" and source_config(tmp_path / "w").num_classes == 4
    fresh = cj.create_model("convnext_atto", num_classes=4, rngs=9)
    load_pretrained(fresh, str(tmp_path / "w"))
    assert all(np.array_equal(a, _params(fresh)[k]) for k, a in _params(model).items())
    with pytest.raises(WeightImportError, match="neither a convnext_jax weights directory .* nor a training workdir"):
        source_kind(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        source_kind(tmp_path / "missing")


def test_our_weights_load_without_torch(tmp_path):
    cj.save_weights(cj.create_model("convnextv2_atto", num_classes=3, **SMALL), tmp_path / "w")
    script = (
        "import sys\n"
        "import convnext_jax as cj\n"
        f"model = cj.load_weights({str(tmp_path / 'w')!r})\n"
        "assert model.cfg.num_classes == 3\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_training_workdir_checkpoint_params_and_ema(tmp_path):
    import optax

    from convnext_jax.train.state import TrainState

    model = cj.create_model("convnextv2_atto", num_classes=5, rngs=1, **SMALL)
    params = nnx.state(model, nnx.Param)
    state = TrainState.create(params, optax.adamw(1e-3), ema=True)
    state = state.replace(ema=jax.tree.map(lambda p: p + 1.0, state.ema))
    checkpointer = Checkpointer(str(tmp_path), keep_latest=2)
    loader = iter(
        __import__("convnext_jax.data", fromlist=["create_loader"]).create_loader(
            __import__("convnext_jax.data", fromlist=["SyntheticSource"]).SyntheticSource(8, 32, 5),
            batch_size=4,
            transforms=[],
            shuffle=False,
        )
    )
    checkpointer.save(7, state, loader, metrics={"val_top1": 0.5})
    checkpointer.close()
    assert source_kind(tmp_path) == "workdir"
    cfg = source_config(tmp_path)
    assert cfg.depths == (1, 1, 2, 1) and cfg.dims == (16, 24, 32, 48) and cfg.use_grn and cfg.num_classes == 5
    fresh = cj.create_model("convnextv2_atto", num_classes=5, rngs=2, **SMALL)
    load_pretrained(fresh, str(tmp_path), use_ema=True)
    want = {k: v + 1.0 for k, v in _params(model).items()}
    assert all(np.allclose(a, want[k]) for k, a in _params(fresh).items())
    tree = read_checkpoint_params(tmp_path, 7)
    assert "opt_state" not in tree and "stem_conv" in tree
    other = cj.create_model("convnextv2_atto", num_classes=5, rngs=2, depths=(1, 1, 1, 1), dims=(16, 24, 32, 48))
    with pytest.raises(WeightImportError, match="(?s)do not fit the model .*hold"):
        load_pretrained(other, str(tmp_path))
    with pytest.raises(WeightImportError, match="no checkpoint at step 3"):
        read_checkpoint_params(tmp_path, 3)
