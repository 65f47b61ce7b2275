"""Our weights directory: save, load (no PyTorch round trip), execution options, errors."""

import numpy as np
import pytest

import convnext_jax as cj
from convnext_jax.weights import directory


def test_flax_weights_directory(tmp_path):
    model = cj.create_model("convnext_atto", num_classes=3, rngs=5)
    directory.save_weights(model, tmp_path / "w")
    with pytest.raises(FileExistsError, match="overwrite"):
        directory.save_weights(model, tmp_path / "w")
    restored = directory.load_weights(tmp_path / "w", scan_blocks=True, dtype="bfloat16")
    assert restored.cfg.scan_blocks and restored.cfg.dtype == "bfloat16"
    want = cj.export_pytorch_weights(model)
    got = cj.export_pytorch_weights(restored)
    assert all(np.array_equal(want[k], got[k]) for k in want)
    with pytest.raises(FileNotFoundError, match="not a convnext_jax weights directory"):
        directory.load_weights(tmp_path)
