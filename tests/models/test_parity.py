"""Eval-mode logits equal timm's (fp32, <= 1e-4 max abs) for V1 and V2, both MLP layouts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import timm
import torch
from flax import nnx
from timm.models.convnext import ConvNeXt as TimmConvNeXt

import convnext_jax as cj
from tests.conftest import nchw_to_nhwc, randomize_

TOL = 1e-4


def _jax_logits(model, x_nchw):
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
    return np.asarray(forward(state, jnp.asarray(nchw_to_nhwc(x_nchw))))


def _check(reference, model, sizes, batch=2):
    reference.eval()
    for size in sizes:
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(size))
        with torch.no_grad():
            want = reference(x).numpy()
        got = _jax_logits(model, x)
        assert got.dtype == np.float32
        assert np.abs(got - want).max() <= TOL, f"size {size}: max diff {np.abs(got - want).max()}"


@pytest.mark.parametrize("name", ["convnext_atto", "convnextv2_atto"])
def test_named_variant_logits_match_timm(name):
    reference = randomize_(timm.create_model(name, pretrained=False, num_classes=10))
    model = cj.create_model(name, num_classes=10)
    cj.load_pytorch_weights(model, reference.state_dict())
    _check(reference, model, sizes=(32, 50, 64))


@pytest.mark.parametrize("use_grn", [False, True])
def test_linear_mlp_layout_logits_match_timm(use_grn):
    """timm tiny..huge store the MLP as nn.Linear (conv_mlp=False); same check on a small custom model."""
    kw = dict(depths=(1, 1, 2, 1), dims=(16, 24, 32, 48))
    reference = TimmConvNeXt(num_classes=7, use_grn=use_grn, ls_init_value=None if use_grn else 1e-6, **kw)
    randomize_(reference, seed=3)
    name = "convnextv2_tiny" if use_grn else "convnext_tiny"
    model = cj.create_model(name, num_classes=7, **kw)
    assert not model.cfg.conv_mlp
    cj.load_pytorch_weights(model, reference.state_dict())
    _check(reference, model, sizes=(32, 45, 64), batch=3)


def test_convnext_tiny_logits_match_timm():
    reference = randomize_(timm.create_model("convnext_tiny", pretrained=False, num_classes=10))
    model = cj.create_model("convnext_tiny", num_classes=10)
    cj.load_pytorch_weights(model, reference.state_dict())
    _check(reference, model, sizes=(32,))


def test_xxlarge_norm_eps_is_carried():
    assert cj.model_config("convnext_xxlarge").norm_eps == 1e-5
    assert cj.model_config("convnext_tiny").norm_eps == 1e-6
