"""FCMAE weights: the official checkpoint layout in and out, the encoder into a classifier as the
official fine-tuning does, weights directories and the convert command, clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import convnext_jax as cj
from convnext_jax.weights import convert, load_pretrained, source_config
from tests.conftest import randomize_
from tests.reference.official_fcmae import FCMAE as OfficialFCMAE

SMALL = dict(depths=(1, 1, 2, 1), dims=(16, 24, 32, 48))


@pytest.fixture(scope="module")
def official():
    torch.manual_seed(0)
    ref = randomize_(OfficialFCMAE(decoder_embed_dim=32, grn_stats="batch", **SMALL), seed=1)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if "grn" in name or "mask_token" in name:
                p.add_(0.3 * torch.randn(p.shape))
    return ref


def _fcmae(**kw):
    return cj.create_fcmae("convnextv2_atto", decoder_dim=32, grn_stats="batch", **SMALL, **kw)


def test_official_layout_round_trips_exactly(official, tmp_path):
    model = _fcmae()
    cj.load_pytorch_weights(model, {"model": official.state_dict(), "epoch": 799})  # as main_pretrain.py saves
    exported = cj.export_pytorch_weights(model)
    assert set(exported) == set(official.state_dict())
    fresh = OfficialFCMAE(decoder_embed_dim=32, **SMALL)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=True)
    for key, value in official.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    torch.save({"model": official.state_dict()}, tmp_path / "fcmae.pt")
    cfg = source_config(tmp_path / "fcmae.pt")
    assert cfg.encoder.depths == (1, 1, 2, 1) and cfg.decoder_dim == 32 and cfg.encoder.grn_stats == "batch"


def test_encoder_into_a_classifier_as_the_official_fine_tuning(official, tmp_path):
    torch.save({"model": official.state_dict()}, tmp_path / "fcmae.pt")
    classifier = cj.create_model("convnextv2_atto", num_classes=5, **SMALL)
    fresh_norm = np.asarray(classifier.head_norm.scale[...]).copy()
    with pytest.raises(cj.WeightImportError, match="FCMAE .pre-training. checkpoint: it has no classifier"):
        cj.load_pytorch_weights(classifier, tmp_path / "fcmae.pt")
    cj.load_pytorch_weights(classifier, tmp_path / "fcmae.pt", reset_head=True)
    np.testing.assert_array_equal(classifier.head_norm.scale[...], fresh_norm)  # the final norm stays fresh
    model = _fcmae(init="convnext")
    cj.load_pytorch_weights(model, official.state_dict())
    images = jax.random.normal(jax.random.key(0), (2, 64, 64, 3))
    # the classifier's GRN is per image: compare with the FCMAE encoder in 'sample' mode
    sample = cj.create_fcmae("convnextv2_atto", decoder_dim=32, grn_stats="sample", **SMALL)
    cj.load_pytorch_weights(sample, official.state_dict())
    np.testing.assert_allclose(
        classifier.forward_features(images),
        sample.forward_features(images, keep=jnp.ones((2, 2, 2))),
        atol=1e-4,
        rtol=1e-4,
    )


def test_pretraining_weights_directory_and_workdir_tree_into_a_classifier(official, tmp_path):
    model = _fcmae()
    cj.load_pytorch_weights(model, official.state_dict())
    cj.save_weights(model, tmp_path / "w")
    restored = cj.load_weights(tmp_path / "w", scan_blocks=True)
    assert restored.cfg.encoder.scan_blocks and restored.cfg.decoder_dim == 32
    images = jax.random.normal(jax.random.key(1), (2, 64, 64, 3))
    mask = jnp.asarray([[1.0, 0, 1, 1], [0, 1, 1, 1]])
    np.testing.assert_allclose(restored(images, mask=mask)[1], model(images, mask=mask)[1], atol=1e-5)
    classifier = cj.create_model("convnextv2_atto", num_classes=3, **SMALL)
    with pytest.raises(cj.WeightImportError, match="FCMAE .pre-training. weights"):
        load_pretrained(classifier, str(tmp_path / "w"))
    assert "fresh classifier" in load_pretrained(classifier, str(tmp_path / "w"), reset_head=True)
    np.testing.assert_array_equal(classifier.stages[2].blocks.fc1.kernel[...], model.stages[2].blocks.fc1.kernel[...])


def test_checkpoints_that_do_not_fit_name_what_is_wrong(official, tmp_path):
    classifier_ckpt = cj.export_pytorch_weights(cj.create_model("convnextv2_atto", num_classes=3, **SMALL))
    with pytest.raises(cj.WeightImportError, match="(?s)missing .81.*not an FCMAE checkpoint .no decoder: proj.weight"):
        cj.load_pytorch_weights(_fcmae(), classifier_ckpt)
    bigger = cj.create_fcmae("convnextv2_atto", decoder_dim=32, depths=(1, 1, 2, 1), dims=(16, 24, 32, 64))
    with pytest.raises(
        cj.WeightImportError,
        match=r"encoder.stages.3.0.dwconv.kernel: checkpoint \(49, 48\), model "
        r"\(49, 64\)",
    ):
        cj.load_pytorch_weights(bigger, official.state_dict())


def test_convert_command_handles_fcmae_files(official, tmp_path):
    torch.save({"model": official.state_dict()}, tmp_path / "fcmae.pt")
    assert convert.main([str(tmp_path / "fcmae.pt"), str(tmp_path / "w")]) == 0
    assert convert.main([str(tmp_path / "w"), str(tmp_path / "back.pt")]) == 0
    back = torch.load(tmp_path / "back.pt")
    for key, value in official.state_dict().items():
        assert torch.equal(back[key], value), key
