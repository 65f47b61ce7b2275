"""Layer-wise LR decay: timm's layer assignment (from the model's naming table), scaled updates."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

import convnext_jax as cj
from convnext_jax.models.naming import layer_ids, parameter_names
from convnext_jax.train.layer_decay import layer_decay_scales
from convnext_jax.train.optim import LearningRate, build_optimizer


def _optim(**kw):
    base = dict(
        name="sgd",
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        weight_decay=0.0,
        clip_grad_norm=0.0,
        momentum=0.0,
        grad_accum_steps=1,
        layer_decay=0.0,
    )
    base.update(kw)
    return ml_collections.ConfigDict(base)


def test_layer_decay_matches_timm():
    import timm
    from timm.models._manipulate import group_parameters

    depths, decay = (2, 2, 3, 2), 0.7
    reference = timm.create_model("convnext_atto", num_classes=10, depths=depths)
    layer_map = group_parameters(reference, reference.group_matcher(coarse=False), reverse=True)
    layer_max = max(layer_map.values())
    model = cj.create_model("convnext_atto", num_classes=10, depths=depths, rngs=0)
    scales = nnx.to_pure_dict(layer_decay_scales(nnx.state(model, nnx.Param), layer_ids(model.cfg), decay))
    names = {name for name, _ in reference.named_parameters()}
    checked = 0
    for spec in parameter_names(model.cfg):
        leaf = scales
        for key in spec.path:
            leaf = leaf[key]
        ours = float(np.asarray(leaf).reshape(-1)[spec.block or 0])
        want = decay ** (layer_max - layer_map.get(spec.torch_key, layer_max))
        assert ours == pytest.approx(want, rel=1e-6), spec.torch_key
        checked += spec.torch_key in names
    assert checked == len(names)


def test_layer_decay_scales_the_updates():
    model = cj.create_model("convnext_atto", num_classes=10, depths=(1, 1, 1, 1), rngs=0)
    params = nnx.state(model, nnx.Param)
    grads = jax.tree.map(jnp.ones_like, params)
    plain = build_optimizer(_optim(), params, LearningRate(10, schedule="constant"), peak_lr=1.0)
    decayed = build_optimizer(
        _optim(layer_decay=0.5),
        params,
        LearningRate(10, schedule="constant"),
        peak_lr=1.0,
        layer_ids=layer_ids(model.cfg),
    )
    u_plain = nnx.to_pure_dict(plain.update(grads, plain.init(params), params)[0])
    u_decay = nnx.to_pure_dict(decayed.update(grads, decayed.init(params), params)[0])
    np.testing.assert_allclose(u_decay["head_fc"]["kernel"], u_plain["head_fc"]["kernel"])  # top layer: x1
    np.testing.assert_allclose(u_decay["stem_conv"]["kernel"], u_plain["stem_conv"]["kernel"] * 0.5**5)
    np.testing.assert_allclose(
        u_decay["stages"][2]["blocks"]["fc1"]["kernel"], u_plain["stages"][2]["blocks"]["fc1"]["kernel"] * 0.5**2
    )
    with pytest.raises(ValueError, match="layer_decay"):
        build_optimizer(_optim(layer_decay=1.5), params, LearningRate(10), peak_lr=1.0)
