"""The model's naming table: timm's keys and shapes, timm's layer ids, and the FLOP count from it."""

import numpy as np
import pytest
import timm
from timm.models._manipulate import group_parameters

import convnext_jax as cj
from convnext_jax.models.naming import layer_ids, parameter_names
from convnext_jax.models.params import forward_macs


@pytest.mark.parametrize("name", ["convnext_atto", "convnextv2_atto", "convnext_tiny"])
def test_keys_shapes_and_layer_ids_are_timms(name):
    reference = timm.create_model(name, num_classes=10, depths=(2, 1, 3, 1))
    names = parameter_names(cj.model_config(name, num_classes=10, depths=(2, 1, 3, 1)))
    assert sorted(n.torch_key for n in names) == sorted(reference.state_dict())
    assert all(tuple(reference.state_dict()[n.torch_key].shape) == n.torch_shape for n in names)
    layer_map = group_parameters(reference, reference.group_matcher(coarse=False), reverse=True)
    for n in names:
        assert n.layer_id == layer_map[n.torch_key], n.torch_key


def test_layer_ids_per_path_stack_the_blocks():
    cfg = cj.model_config("convnext_atto", num_classes=3, depths=(2, 1, 3, 1))
    ids = layer_ids(cfg)
    assert int(ids[("stem_conv", "kernel")]) == 0 and int(ids[("head_fc", "kernel")]) == 8 == sum(cfg.depths) + 1
    np.testing.assert_array_equal(ids[("stages", 2, "blocks", "fc1", "kernel")], [4, 5, 6])
    assert int(ids[("stages", 2, "downsample_conv", "kernel")]) == 4  # with the stage's first block
    model = cj.create_model("convnext_atto", num_classes=3, depths=(2, 1, 3, 1))
    from flax import nnx

    assert set(ids) == {path for path, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}


@pytest.mark.parametrize(
    "name, size, gmacs",
    [
        ("convnext_tiny", 224, 4.47),
        ("convnext_base", 224, 15.38),
        ("convnext_base", 384, 45.21),
        ("convnextv2_atto", 224, 0.55),
        ("convnext_large", 224, 34.4),
    ],
)
def test_forward_macs_match_timm_model_cards(name, size, gmacs):
    # conv + linear MACs; timm's figures also count norms/activations, hence the 1% tolerance
    assert forward_macs(cj.model_config(name), size) / 1e9 == pytest.approx(gmacs, rel=0.01)
