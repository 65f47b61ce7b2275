"""Initialisation follows the references: trunc-normal(0.02), zero biases, layer scale, GRN, head scale."""

import jax
import numpy as np
from flax import nnx

import convnext_jax as cj
from convnext_jax.models.layers import trunc_normal


def test_trunc_normal_uses_absolute_bounds_like_pytorch():
    values = np.asarray(trunc_normal(0.02)(jax.random.key(0), (200_000,)))
    assert abs(values.std() - 0.02) < 5e-4  # jax's truncated_normal(+-2 std) would give ~0.0176
    assert abs(values.mean()) < 5e-4
    wide = np.asarray(trunc_normal(1.0)(jax.random.key(1), (100_000,)))
    assert wide.min() >= -2.0 and wide.max() <= 2.0 and wide.std() < 0.9  # truncation at +-2 applies


def test_traced_and_eager_init_agree():
    eager = cj.create_model("convnext_atto", depths=(1, 1, 1, 1), dims=(8, 8, 8, 8), num_classes=3, rngs=4)
    traced = nnx.jit(lambda: cj.create_model("convnext_atto", depths=(1, 1, 1, 1), dims=(8, 8, 8, 8),
                                             num_classes=3, rngs=4))()
    for a, b in zip(jax.tree.leaves(nnx.state(eager, nnx.Param)), jax.tree.leaves(nnx.state(traced, nnx.Param))):
        np.testing.assert_array_equal(a, b)


def test_parameter_init_values():
    model = cj.create_model("convnext_tiny", num_classes=100, head_init_scale=0.5, rngs=0,
                            depth_multiplier=0.34, width_multiplier=0.5)
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
