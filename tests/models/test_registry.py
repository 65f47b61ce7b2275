"""create_model: parameter counts equal timm's for every variant and class count; scaling and custom
architectures in one call."""

import pytest
import timm
from flax import nnx

import convnext_jax as cj

TIMM_NAMES = [
    "convnext_atto",
    "convnext_femto",
    "convnext_pico",
    "convnext_nano",
    "convnext_tiny",
    "convnext_small",
    "convnext_base",
    "convnext_large",
    "convnext_xlarge",
    "convnext_xxlarge",
    "convnextv2_atto",
    "convnextv2_femto",
    "convnextv2_pico",
    "convnextv2_nano",
    "convnextv2_tiny",
    "convnextv2_small",
    "convnextv2_base",
    "convnextv2_large",
    "convnextv2_huge",
]


@pytest.mark.parametrize("name", TIMM_NAMES)
@pytest.mark.parametrize("num_classes", [1000, 10])
def test_param_count_equals_timm(name, num_classes):
    model = nnx.eval_shape(lambda: cj.create_model(name, num_classes=num_classes))  # no allocation
    reference = timm.create_model(name, pretrained=False, num_classes=num_classes, device="meta")
    assert cj.count_params(model) == sum(p.numel() for p in reference.parameters())


def test_scaled_model_is_one_call():
    model = nnx.eval_shape(lambda: cj.create_model("convnext_tiny", num_classes=10, depth_multiplier=2.0))
    assert model.cfg.depths == (6, 6, 18, 6)
    assert model.stages[2].blocks.conv_dw.kernel.shape == (18, 7, 7, 1, 384)


def test_custom_depths_and_dims():
    model = cj.create_model("convnextv2_atto", num_classes=5, depths=(1, 1, 2, 1), dims=(8, 16, 24, 32))
    assert model.cfg.use_grn and model.cfg.depths == (1, 1, 2, 1)
    assert model.head_fc.kernel.shape == (32, 5)
