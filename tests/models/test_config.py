"""The model config: the depth/width scaling rule, invalid values refused with their reason."""

import pytest

import convnext_jax as cj
from convnext_jax.models import scale_architecture


def test_scaling_rule_keeps_stage_ratios():
    assert scale_architecture((3, 3, 9, 3), (96, 192, 384, 768), 2.0, 1.0) == ((6, 6, 18, 6), (96, 192, 384, 768))
    assert scale_architecture((3, 3, 9, 3), (96, 192, 384, 768), 0.5, 1.0)[0] == (2, 2, 5, 2)
    depths, dims = scale_architecture((2, 2, 6, 2), (40, 80, 160, 320), 1.0, 1.5)
    assert depths == (2, 2, 6, 2) and dims == (64, 120, 240, 480)
    assert all(d % 8 == 0 for d in scale_architecture((2,), (36,), 1.0, 0.3)[1])
    with pytest.raises(ValueError):
        scale_architecture((2,), (8,), 0.0, 1.0)


def test_invalid_config_values():
    with pytest.raises(ValueError, match="equal length"):
        cj.create_model("convnext_atto", depths=(1, 1), dims=(8, 16, 32))
    with pytest.raises(ValueError, match="remat"):
        cj.create_model("convnext_atto", remat="sometimes")
    with pytest.raises(ValueError, match="drop_path_rate"):
        cj.create_model("convnext_atto", drop_path_rate=1.5)
