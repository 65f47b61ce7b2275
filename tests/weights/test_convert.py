"""The convert command line: PyTorch file -> weights directory -> PyTorch file, and its errors."""

import os

import numpy as np
import pytest
import timm
import torch

import convnext_jax as cj
from convnext_jax.weights import convert, load_weights
from tests.conftest import nchw_to_nhwc, randomize_


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _logits(model, x):
    import jax.numpy as jnp

    return np.asarray(model(jnp.asarray(nchw_to_nhwc(x))))


def test_cli_converts_to_orbax_and_back(tmp_path, x):
    reference = randomize_(timm.create_model("convnextv2_atto", num_classes=5), seed=9).eval()
    torch.save({"model": reference.state_dict()}, tmp_path / "src.pth")
    dst = tmp_path / "flax"
    assert convert.main([str(tmp_path / "src.pth"), str(dst)]) == 0
    with pytest.raises(SystemExit) as info:  # exists, no --force
        convert.main([str(tmp_path / "src.pth"), str(dst)])
    assert info.value.code == 2
    model = load_weights(dst)
    assert model.cfg == cj.model_config("convnextv2_atto", num_classes=5)
    with torch.no_grad():
        assert np.abs(_logits(model, x) - reference(x).numpy()).max() <= 1e-4
    out = tmp_path / "back.safetensors"
    assert convert.main([str(dst), str(out)]) == 0
    (tmp_path / "other").write_text("")  # the mode any new file gets here
    assert out.stat().st_mode & 0o777 == (tmp_path / "other").stat().st_mode & 0o777  # not safetensors' 0600
    from safetensors.torch import load_file

    fresh = timm.create_model("convnextv2_atto", num_classes=5)
    fresh.load_state_dict(load_file(out), strict=True)
    for key, value in reference.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_cli_reports_errors(tmp_path, capsys):
    sd = timm.create_model("convnext_atto", num_classes=10).state_dict()
    torch.save(sd, tmp_path / "a.pth")
    with pytest.raises(SystemExit) as info:
        convert.main([str(tmp_path / "a.pth"), str(tmp_path / "o"), "--model", "convnext_femto"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("error: ") and "shape mismatch" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as info:
        convert.main([str(tmp_path / "missing.pth"), str(tmp_path / "o")])
    assert info.value.code == 2 and "not found" in capsys.readouterr().err
    assert convert.main([str(tmp_path / "a.pth"), str(tmp_path / "o2"), "--num-classes", "3", "--reset-head"]) == 0
    assert load_weights(tmp_path / "o2").cfg.num_classes == 3
    assert os.path.exists(tmp_path / "o2" / "config.json")
