"""scripts/compare_pytorch.py: from the same init and the same batches, one epoch of the recipe in
JAX and in PyTorch + timm ends at the same validation loss (the whole training path agrees)."""

import importlib.util
import json
import os
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")

TINY_CONFIG = """
from configs.embedded_digits import get_config as base


def get_config(arg="v2"):
    config = base(arg)
    with config.unlocked():
        config.num_epochs = 1
        config.model.dims = (16, 24, 32, 48)
        config.model.dwconv_impl = "lax"
    return config
"""


def test_jax_and_pytorch_training_agree(tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location(
        "compare_pytorch", os.path.join(ROOT, "scripts", "compare_pytorch.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "tiny.py").write_text(TINY_CONFIG)
    monkeypatch.syspath_prepend(os.path.abspath(ROOT))
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "compare_pytorch.py",
            "--config",
            str(tmp_path / "tiny.py"),
            "--seeds",
            "0",
            "1",
            "--threads",
            "2",
            "--json",
            str(tmp_path / "out.json"),
        ],
    )
    module.main()
    results = json.loads((tmp_path / "out.json").read_text())
    for ours, theirs in zip(results["jax"], results["pytorch"]):
        assert ours["final_val_loss"] == pytest.approx(theirs["final_val_loss"], rel=1e-3)
        assert abs(ours["final_val_top1"] - theirs["final_val_top1"]) <= 2 / 360  # at most 2 of 360 images flip
    assert "| best_val_top1 |" in capsys.readouterr().out
