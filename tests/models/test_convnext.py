"""The ConvNeXt model: logits equal timm's, timm's initialisation, stochastic depth per block and per
sample, bf16 compute with fp32 parameters and logits, clear input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import timm
import torch
from flax import nnx
from timm.layers import calculate_drop_path_rates
from timm.models.convnext import ConvNeXt as TimmConvNeXt

import convnext_jax as cj
from convnext_jax.models import drop_path_rates
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


SMALL = dict(depths=(2, 1, 3, 1), dims=(8, 16, 24, 32), num_classes=5, dwconv_impl="lax")


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.standard_normal((4, 32, 32, 3)), jnp.float32), jnp.asarray([0, 1, 2, 3])


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


def test_parameter_init_values():
    model = cj.create_model(
        "convnext_tiny", num_classes=100, head_init_scale=0.5, rngs=0, depth_multiplier=0.34, width_multiplier=0.5
    )
    blocks = model.stages[0].blocks
    assert np.all(np.asarray(blocks.gamma[...]) == np.float32(1e-6))
    assert np.all(np.asarray(blocks.conv_dw.bias[...]) == 0) and np.all(np.asarray(blocks.fc1.bias[...]) == 0)
    assert np.all(np.asarray(blocks.norm.scale[...]) == 1)
    fc1 = np.asarray(model.stages[2].blocks.fc1.kernel[...])
    assert abs(fc1.std() - 0.02) < 1e-3
    head = np.asarray(model.head_fc.kernel[...])
    assert abs(head.std() - 0.01) < 1e-3  # 0.02 * head_init_scale
    v2 = cj.create_model("convnextv2_atto", num_classes=10)
    assert v2.stages[1].blocks.gamma is None
    assert np.all(np.asarray(v2.stages[1].blocks.grn.weight[...]) == 0)
    assert np.all(np.asarray(v2.stages[1].blocks.grn.bias[...]) == 0)


def test_blocks_are_initialised_independently():
    model = cj.create_model("convnext_atto", num_classes=2)
    kernels = np.asarray(model.stages[2].blocks.fc1.kernel[...])
    assert kernels.shape[0] == 6
    assert len({k.tobytes() for k in kernels}) == 6


def test_feature_extractor_without_classifier():
    model = cj.create_model("convnext_atto", num_classes=0, depths=(1, 1, 1, 1), dims=(8, 8, 8, 16))
    assert model.head_fc is None
    assert model(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 16)


def test_rates_follow_timm_linear_rule():
    for depths, rate in [((3, 3, 9, 3), 0.1), ((2, 2, 6, 2), 0.3), ((1,), 0.2)]:
        ours = drop_path_rates(depths, rate)
        theirs = calculate_drop_path_rates(rate, list(depths), stagewise=True)
        assert [len(s) for s in ours] == list(depths)
        np.testing.assert_allclose(np.concatenate(ours), np.concatenate(theirs), atol=1e-7)


def test_train_mode_is_stochastic_and_eval_mode_deterministic():
    model = cj.create_model("convnext_atto", drop_path_rate=0.5, ls_init_value=1.0, **SMALL)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 32, 32, 3)), jnp.float32)
    eval_out = model(x)
    np.testing.assert_array_equal(model(x, train=False), eval_out)
    a = model(x, train=True, rng=jax.random.key(1))
    b = model(x, train=True, rng=jax.random.key(1))
    c = model(x, train=True, rng=jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, eval_out)
    with pytest.raises(ValueError, match="RNG key"):
        model(x, train=True)


def test_zero_rate_train_equals_eval():
    model = cj.create_model("convnextv2_atto", drop_path_rate=0.0, **SMALL)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 32, 32, 3)), jnp.float32)
    np.testing.assert_array_equal(model(x, train=True), model(x))


def test_bf16_compute_keeps_fp32_params_and_logits(batch):
    x, _ = batch
    fp32 = cj.create_model("convnextv2_atto", rngs=2, **SMALL)
    bf16 = cj.create_model("convnextv2_atto", rngs=2, dtype="bfloat16", **SMALL)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(bf16, nnx.Param)))
    out16, out32 = bf16(x), fp32(x)
    assert out16.dtype == jnp.float32
    np.testing.assert_allclose(out16, out32, atol=0.05 * float(jnp.abs(out32).max()) + 1e-3)
    assert not np.allclose(out16, out32, atol=1e-7)  # really computed in bf16


def test_bf16_intermediates_are_bf16(batch):
    x, _ = batch
    model = cj.create_model("convnext_atto", dtype="bfloat16", **SMALL)
    features = model.forward_features(x)
    assert features.dtype == jnp.bfloat16


def test_input_validation(batch):
    model = cj.create_model("convnext_atto", **SMALL)
    with pytest.raises(ValueError, match="NHWC"):
        model(jnp.zeros((2, 3, 32, 32)))
    with pytest.raises(ValueError, match="total stride 32"):
        model(jnp.zeros((2, 16, 16, 3)))
