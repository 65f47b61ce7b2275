"""The variant table: timm's names, clear errors for unknown names and options."""

import pytest

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


def test_every_timm_variant_is_registered():
    assert sorted(TIMM_NAMES) == cj.list_models()
    assert cj.list_models("convnextv2_*") == sorted(n for n in TIMM_NAMES if n.startswith("convnextv2_"))


def test_unknown_model_name_lists_valid_names():
    with pytest.raises(ValueError, match="convnext_tiny") as info:
        cj.create_model("convnext_tinny")
    assert "Did you mean" in str(info.value) and "convnextv2_huge" in str(info.value)


def test_unknown_option_is_rejected():
    with pytest.raises(TypeError, match="unknown model option"):
        cj.create_model("convnext_atto", drop_pth_rate=0.1)
