"""PyTorch weights: timm and official layouts, file formats, wrappers, errors, architecture inference."""

import jax.numpy as jnp
import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.models.convnext import ConvNeXt as TimmConvNeXt
from timm.models.convnext import checkpoint_filter_fn

import convnext_jax as cj
from convnext_jax.weights import pytorch
from tests.conftest import nchw_to_nhwc, randomize_
from tests.reference import official_convnext

SMALL = dict(depths=(1, 1, 2, 1), dims=(16, 24, 32, 48))


def _logits(model, x):
    return np.asarray(model(jnp.asarray(nchw_to_nhwc(x))))


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("v2", [False, True])
def test_official_layout_matches_official_model_and_timm(v2, x):
    official = randomize_(official_convnext.ConvNeXt(num_classes=6, v2=v2, **SMALL), seed=5).eval()
    state = {"model": official.state_dict()}  # as saved by the official training scripts
    with torch.no_grad():
        want = official(x).numpy()
    # timm's own remapping of the same checkpoint gives the same function
    timm_model = TimmConvNeXt(num_classes=6, use_grn=v2, ls_init_value=None if v2 else 1e-6, **SMALL).eval()
    timm_model.load_state_dict(checkpoint_filter_fn(state, timm_model))
    with torch.no_grad():
        np.testing.assert_allclose(timm_model(x).numpy(), want, atol=1e-5)
    model = cj.create_model("convnextv2_tiny" if v2 else "convnext_tiny", num_classes=6, **SMALL)
    cj.load_pytorch_weights(model, state)
    assert np.abs(_logits(model, x) - want).max() <= 1e-4


def test_official_v2_atto_into_timm_layout_model(x):
    """Official V2 atto stores Linear MLPs; timm's atto stores 1x1 convs. Both import, export is timm's."""
    official = randomize_(
        official_convnext.ConvNeXt(num_classes=4, v2=True, depths=(2, 2, 6, 2), dims=(40, 80, 160, 320)), seed=2
    ).eval()
    model = cj.create_model("convnextv2_atto", num_classes=4)
    cj.load_pytorch_weights(model, official.state_dict())
    with torch.no_grad():
        assert np.abs(_logits(model, x) - official(x).numpy()).max() <= 1e-4
    timm_model = timm.create_model("convnextv2_atto", num_classes=4)
    timm_model.load_state_dict({k: torch.from_numpy(v) for k, v in cj.export_pytorch_weights(model).items()})
    with torch.no_grad():
        assert np.abs(timm_model.eval()(x).numpy() - official(x).numpy()).max() <= 1e-4


@pytest.mark.parametrize("name", ["convnext_atto", "convnextv2_atto", "convnext_tiny"])
def test_export_round_trip_is_exact(name):
    reference = randomize_(timm.create_model(name, num_classes=3), seed=1)
    model = cj.create_model(name, num_classes=3)
    cj.load_pytorch_weights(model, reference.state_dict())
    exported = cj.export_pytorch_weights(model)
    fresh = timm.create_model(name, num_classes=3)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=True)
    for key, value in reference.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_file_formats_and_wrappers(tmp_path, x):
    reference = randomize_(timm.create_model("convnextv2_atto", num_classes=5), seed=4).eval()
    with torch.no_grad():
        want = reference(x).numpy()
    sd = reference.state_dict()
    files = {
        "plain.pth": sd,
        "ddp.pth": {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3},
        "compiled.pth": {f"_orig_mod.{k}": v for k, v in sd.items()},
    }
    for fname, obj in files.items():
        torch.save(obj, tmp_path / fname)
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "w.safetensors")
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in sd.items()}, tmp_path / "bf16.safetensors")
    for fname in list(files) + ["w.safetensors"]:
        model = cj.create_model("convnextv2_atto", num_classes=5)
        cj.load_pytorch_weights(model, tmp_path / fname)
        assert np.abs(_logits(model, x) - want).max() <= 1e-4, fname
    model = cj.create_model("convnextv2_atto", num_classes=5)
    cj.load_pytorch_weights(model, str(tmp_path / "bf16.safetensors"))
    assert np.abs(_logits(model, x) - want).max() < 0.05 * np.abs(want).max() + 0.05


def test_ema_weights_are_selected_on_request():
    reference = randomize_(timm.create_model("convnext_atto", num_classes=2), seed=6)
    ema = randomize_(timm.create_model("convnext_atto", num_classes=2), seed=7)
    ckpt = {"state_dict": reference.state_dict(), "state_dict_ema": ema.state_dict()}
    model = cj.create_model("convnext_atto", num_classes=2)
    cj.load_pytorch_weights(model, ckpt, use_ema=True)
    np.testing.assert_array_equal(
        cj.export_pytorch_weights(model)["head.fc.weight"], ema.state_dict()["head.fc.weight"].numpy()
    )
    with pytest.raises(cj.WeightImportError, match="no 'state_dict_ema'"):
        cj.load_pytorch_weights(model, {"state_dict": reference.state_dict()}, use_ema=True)


def test_mismatches_are_all_listed():
    sd = timm.create_model("convnext_atto", num_classes=10).state_dict()
    del sd["stages.1.blocks.0.gamma"]
    sd["stages.2.blocks.0.mlp.fc1.weight"] = torch.zeros(8, 8, 1, 1)
    sd["extra.weight"] = torch.zeros(3)
    model = cj.create_model("convnext_atto", num_classes=10)
    before = cj.export_pytorch_weights(model)
    with pytest.raises(cj.WeightImportError) as info:
        cj.load_pytorch_weights(model, sd)
    message = str(info.value)
    assert "missing (1)" in message and "stages.1.blocks.0.gamma" in message
    assert "unexpected (1)" in message and "extra.weight" in message
    assert "shape mismatch (1)" in message and "(8, 8, 1, 1)" in message and "(640, 160, 1, 1)" in message
    after = cj.export_pytorch_weights(model)  # nothing was half-loaded
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_v1_checkpoint_into_v2_model_is_rejected():
    sd = timm.create_model("convnext_atto", num_classes=10).state_dict()
    with pytest.raises(cj.WeightImportError, match="missing .*mlp.grn.weight|grn"):
        cj.load_pytorch_weights(cj.create_model("convnextv2_atto", num_classes=10), sd)


def test_different_head_needs_explicit_reset():
    reference = randomize_(timm.create_model("convnext_atto", num_classes=1000), seed=8)
    model = cj.create_model("convnext_atto", num_classes=7)
    fresh_head = np.asarray(model.head_fc.kernel[...]).copy()
    with pytest.raises(cj.WeightImportError, match="reset_head=True"):
        cj.load_pytorch_weights(model, reference.state_dict())
    loaded = cj.load_pytorch_weights(model, reference.state_dict(), reset_head=True)
    assert "head.fc.weight" not in loaded and "stem.0.weight" in loaded
    np.testing.assert_array_equal(model.head_fc.kernel[...], fresh_head)
    exported = cj.export_pytorch_weights(model)
    np.testing.assert_array_equal(exported["stem.0.weight"], reference.state_dict()["stem.0.weight"].numpy())


def test_bad_paths_and_files(tmp_path):
    model = cj.create_model("convnext_atto", num_classes=2)
    with pytest.raises(FileNotFoundError, match="not found"):
        cj.load_pytorch_weights(model, tmp_path / "nope.pth")
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(cj.WeightImportError, match="is not a PyTorch checkpoint") as info:
        cj.load_pytorch_weights(model, tmp_path / "broken.pth")
    assert "weights_only" not in str(info.value)  # not torch's advice to unpickle untrusted code
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(cj.WeightImportError, match="cannot read"):
        cj.load_pytorch_weights(model, tmp_path / "broken.safetensors")


def test_infer_config_recognises_variants():
    for name in ["convnext_atto", "convnextv2_nano", "convnext_tiny"]:
        sd = pytorch.to_timm_layout(timm.create_model(name, num_classes=11).state_dict())
        cfg = pytorch.infer_config(sd)
        assert pytorch.variant_name(cfg) == name and cfg.num_classes == 11
        assert cfg == cj.model_config(name, num_classes=11)


def test_a_checkpoint_of_another_model_names_what_it_holds():
    sd = timm.create_model("convnext_atto", num_classes=10).state_dict()
    with pytest.raises(cj.WeightImportError, match="holds convnext_atto") as info:
        cj.load_pytorch_weights(cj.create_model("convnext_tiny", num_classes=10), sd)
    assert len(str(info.value).splitlines()) < 40  # a few keys of each kind, not every key
