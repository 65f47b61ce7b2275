"""FCMAE in JAX equals the dense emulation of the official (sparse) FCMAE: loss and predictions for
both GRN statistics and both losses; removed pixels change nothing the model predicts; with
nothing masked the encoder is the classifier's; masks, inputs and execution options."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import convnext_jax as cj
from convnext_jax.errors import ConfigError
from convnext_jax.models.fcmae import patchify, random_mask, unpatchify
from tests.conftest import nchw_to_nhwc, randomize_
from tests.reference.official_fcmae import FCMAE as OfficialFCMAE

SMALL = dict(depths=(1, 1, 2, 1), dims=(16, 24, 32, 48))


def _reference(norm_pix: bool, stats: str, seed: int = 3):
    torch.manual_seed(seed)
    ref = OfficialFCMAE(decoder_embed_dim=32, norm_pix_loss=norm_pix, grn_stats=stats, **SMALL)
    randomize_(ref, seed=seed)
    with torch.no_grad():  # GRN and the mask token start at zero: make them matter
        for name, p in ref.named_parameters():
            if "grn" in name or "mask_token" in name:
                p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))
    return ref


def _model(norm_pix: bool = False, stats: str = "sample", **options):
    return cj.create_fcmae(
        "convnextv2_atto", decoder_dim=32, norm_pix_loss=norm_pix, grn_stats=stats, **SMALL, **options
    )


def _inputs(n=3, height=64, width=96, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, height, width, generator=gen)
    patches = (height // 32) * (width // 32)
    mask = (torch.rand(n, patches, generator=gen) < 0.6).float()
    mask[:, 0], mask[:, 1] = 1.0, 0.0  # every image keeps one patch and removes one
    return x, mask


@pytest.mark.parametrize("stats", ["sample", "batch"])
@pytest.mark.parametrize("norm_pix", [False, True])
def test_loss_and_predictions_equal_the_official_model(stats, norm_pix):
    ref = _reference(norm_pix, stats)
    x, mask = _inputs()
    with torch.no_grad():
        want_loss, want_pred, _ = ref(x, mask)
    model = _model(norm_pix, stats)
    cj.load_pytorch_weights(model, ref.state_dict())
    loss, pred, got_mask = model(jnp.asarray(nchw_to_nhwc(x)), mask=jnp.asarray(mask.numpy()))
    assert float(loss) == pytest.approx(float(want_loss), rel=1e-4)
    assert np.abs(np.asarray(pred) - want_pred.numpy()).max() <= 1e-4 * np.abs(want_pred.numpy()).max()
    np.testing.assert_array_equal(got_mask, mask.numpy())


def test_removed_pixels_change_nothing_the_model_predicts():
    model = _model(stats="batch")
    x, mask = _inputs(n=2, height=64, width=64)
    images = jnp.asarray(nchw_to_nhwc(x))
    removed = unpatchify(jnp.broadcast_to(jnp.asarray(mask.numpy())[..., None], (2, 4, 32 * 32 * 3)), 32, 64, 64)
    noisy = images + removed * 100.0 * jax.random.normal(jax.random.key(1), images.shape)
    keep = (1.0 - jnp.asarray(mask.numpy())).reshape(2, 2, 2)
    _, pred, _ = model(images, mask=jnp.asarray(mask.numpy()))
    _, noisy_pred, _ = model(noisy, mask=jnp.asarray(mask.numpy()))
    np.testing.assert_allclose(noisy_pred, pred, atol=1e-4, rtol=1e-4)
    features = model.forward_features(images, keep=keep)
    assert not np.any(np.asarray(features) * (1.0 - np.asarray(keep))[..., None])  # zero where removed


def test_with_nothing_masked_the_encoder_is_the_classifiers():
    model = _model()
    classifier = cj.create_model("convnextv2_atto", num_classes=3, **SMALL)
    from flax import nnx

    encoder = {
        k: v
        for k, v in nnx.to_pure_dict(nnx.state(model, nnx.Param)).items()
        if k in ("stem_conv", "stem_norm", "stages")
    }
    state = nnx.state(classifier, nnx.Param)
    pure = nnx.to_pure_dict(state)
    pure.update(encoder)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(classifier, state)
    images = jax.random.normal(jax.random.key(0), (2, 64, 64, 3))
    np.testing.assert_allclose(
        model.forward_features(images, keep=jnp.ones((2, 2, 2))),
        classifier.forward_features(images),
        atol=1e-5,
        rtol=1e-5,
    )


def test_masks_follow_the_official_rule():
    mask = random_mask(jax.random.key(0), 64, 49, 0.6)
    assert mask.shape == (64, 49) and set(np.unique(mask)) == {0.0, 1.0}
    np.testing.assert_array_equal(np.asarray(mask).sum(axis=1), 49 - int(49 * 0.4))  # 19 kept of 49
    assert len({tuple(row) for row in np.asarray(mask)}) > 60  # each image its own
    np.testing.assert_array_equal(random_mask(jax.random.key(0), 64, 49, 0.6), mask)
    model = _model()
    images = jnp.zeros((2, 64, 64, 3))
    _, _, drawn = model(images, rng=jax.random.key(5))
    assert np.asarray(drawn).sum() == 2 * (4 - int(4 * 0.4))
    x = jax.random.normal(jax.random.key(2), (2, 64, 96, 3))
    np.testing.assert_array_equal(unpatchify(patchify(x, 32), 32, 64, 96), x)


def test_bad_input_and_settings_are_clear_errors():
    model = _model()
    with pytest.raises(ConfigError, match="patches of 32 px, so the image size must be a multiple of it; got 48x64"):
        model(jnp.zeros((1, 48, 64, 3)), rng=jax.random.key(0))
    with pytest.raises(ValueError, match="mask= or rng=|rng=key"):
        model(jnp.zeros((1, 64, 64, 3)))
    with pytest.raises(ConfigError, match=r"mask_ratio must be in \(0, 1\), got 1.0"):
        cj.create_fcmae("convnextv2_atto", mask_ratio=1.0)
    with pytest.raises(ConfigError, match="patch_size must equal the encoder's total stride .32 px., got 16"):
        cj.create_fcmae("convnextv2_atto", patch_size=16)


@pytest.mark.parametrize(
    "options",
    [dict(scan_blocks=True, remat="full"), dict(dwconv_impl="ffi", norm_impl="ffi", gelu_impl="ffi", dtype="bfloat16")],
)
def test_execution_options_and_precision(options):
    x, mask = _inputs(n=2, height=64, width=64)
    images, mask = jnp.asarray(nchw_to_nhwc(x)), jnp.asarray(mask.numpy())
    reference = _model(stats="batch", dwconv_impl="lax", norm_impl="xla", gelu_impl="xla")
    model = _model(stats="batch", **options)
    loss_fn = lambda m: m(images, mask=mask, train=True, rng=jax.random.key(0))[0]  # noqa: E731
    from flax import nnx

    def grads(m):
        graphdef, params, rest = nnx.split(m, nnx.Param, ...)
        return jax.grad(lambda p: loss_fn(nnx.merge(graphdef, p, rest)))(params)

    bf16 = options.get("dtype") == "bfloat16"
    assert float(loss_fn(model)) == pytest.approx(float(loss_fn(reference)), rel=3e-2 if bf16 else 1e-4)
    tol = 0.15 if bf16 else 1e-4  # bf16: a few % per parameter's gradient, up to ~10% for the smallest
    for a, b in zip(jax.tree.leaves(grads(model)), jax.tree.leaves(grads(reference))):
        assert np.all(np.isfinite(a))
        assert np.linalg.norm(np.asarray(a, np.float32) - b) <= tol * np.linalg.norm(b) + 1e-6


def test_official_initialisation():
    model = cj.create_fcmae("convnextv2_tiny", decoder_dim=64, rngs=1)
    assert np.std(np.asarray(model.stem_conv.kernel[...])) == pytest.approx(0.88, abs=0.05)  # N(0, 1) cut at +-2
    assert np.std(np.asarray(model.stages[1].downsample_conv.kernel[...])) == pytest.approx(0.02, rel=0.1)
    assert np.abs(np.asarray(model.decoder.blocks.fc1.kernel[...])).max() <= 1 / np.sqrt(64)  # PyTorch's default
    assert np.std(np.asarray(model.mask_token[...])) == pytest.approx(0.02, rel=0.3)
    plain = cj.create_fcmae("convnextv2_tiny", decoder_dim=64, rngs=1, init="convnext")
    assert np.std(np.asarray(plain.stem_conv.kernel[...])) == pytest.approx(0.02, rel=0.1)
