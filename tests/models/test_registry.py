"""Variant table, parameter counts against timm, scaling rule, name errors."""

import pytest
import timm
from flax import nnx

import convnext_jax as cj
from convnext_jax.models import scale_architecture

TIMM_NAMES = [
    "convnext_atto", "convnext_femto", "convnext_pico", "convnext_nano", "convnext_tiny", "convnext_small",
    "convnext_base", "convnext_large", "convnext_xlarge", "convnext_xxlarge",
    "convnextv2_atto", "convnextv2_femto", "convnextv2_pico", "convnextv2_nano", "convnextv2_tiny",
    "convnextv2_small", "convnextv2_base", "convnextv2_large", "convnextv2_huge",
]


def test_every_timm_variant_is_registered():
    assert sorted(TIMM_NAMES) == cj.list_models()
    assert cj.list_models("convnextv2_*") == sorted(n for n in TIMM_NAMES if n.startswith("convnextv2_"))


@pytest.mark.parametrize("name", TIMM_NAMES)
@pytest.mark.parametrize("num_classes", [1000, 10])
def test_param_count_equals_timm(name, num_classes):
    model = nnx.eval_shape(lambda: cj.create_model(name, num_classes=num_classes))  # no allocation
    reference = timm.create_model(name, pretrained=False, num_classes=num_classes, device="meta")
    assert cj.count_params(model) == sum(p.numel() for p in reference.parameters())


def test_unknown_model_name_lists_valid_names():
    with pytest.raises(ValueError, match="convnext_tiny") as info:
        cj.create_model("convnext_tinny")
    assert "Did you mean" in str(info.value) and "convnextv2_huge" in str(info.value)


def test_unknown_option_is_rejected():
    with pytest.raises(TypeError, match="unknown model option"):
        cj.create_model("convnext_atto", drop_pth_rate=0.1)


def test_scaling_rule_keeps_stage_ratios():
    assert scale_architecture((3, 3, 9, 3), (96, 192, 384, 768), 2.0, 1.0) == ((6, 6, 18, 6), (96, 192, 384, 768))
    assert scale_architecture((3, 3, 9, 3), (96, 192, 384, 768), 0.5, 1.0)[0] == (2, 2, 5, 2)
    depths, dims = scale_architecture((2, 2, 6, 2), (40, 80, 160, 320), 1.0, 1.5)
    assert depths == (2, 2, 6, 2) and dims == (64, 120, 240, 480)
    assert all(d % 8 == 0 for d in scale_architecture((2,), (36,), 1.0, 0.3)[1])
    with pytest.raises(ValueError):
        scale_architecture((2,), (8,), 0.0, 1.0)


def test_scaled_model_is_one_call():
    model = nnx.eval_shape(lambda: cj.create_model("convnext_tiny", num_classes=10, depth_multiplier=2.0))
    assert model.cfg.depths == (6, 6, 18, 6)
    assert model.stages[2].blocks.conv_dw.kernel.shape == (18, 7, 7, 1, 384)


def test_custom_depths_and_dims():
    model = cj.create_model("convnextv2_atto", num_classes=5, depths=(1, 1, 2, 1), dims=(8, 16, 24, 32))
    assert model.cfg.use_grn and model.cfg.depths == (1, 1, 2, 1)
    assert model.head_fc.kernel.shape == (32, 5)


def test_invalid_config_values():
    with pytest.raises(ValueError, match="equal length"):
        cj.create_model("convnext_atto", depths=(1, 1), dims=(8, 16, 32))
    with pytest.raises(ValueError, match="remat"):
        cj.create_model("convnext_atto", remat="sometimes")
    with pytest.raises(ValueError, match="drop_path_rate"):
        cj.create_model("convnext_atto", drop_path_rate=1.5)
