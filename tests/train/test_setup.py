"""Everything built from the config: sizes, the model (named, or taken from pretrained weights),
and clear errors for batch sizes that cannot work."""

import pytest

import convnext_jax as cj
from configs.common import tiny_study_base
from convnext_jax.errors import ConfigError
from convnext_jax.sweep.space import apply_params
from convnext_jax.train import setup as setup_lib


def _config(**changes):
    return apply_params(tiny_study_base(), changes)


def test_build_sizes_and_dropped_images():
    s = setup_lib.build(_config(batch_size=100))
    assert len(s.train_source) == 1437 and s.steps_per_epoch == 14 and s.total_steps == 3 * 14
    assert s.dropped_per_epoch == 37 and s.num_classes == 10 and s.micro_batch == 100
    assert s.model_cfg.depths == (1, 1, 1, 1) and s.model_cfg.dims == (16, 24, 32, 48)
    assert "dwconv=" in s.ops and int(s.state.step) == 0 and s.state.ema is None


def test_model_architecture_from_the_pretrained_weights(tmp_path):
    pretrained = cj.create_model("convnext_atto", num_classes=3, depths=(1, 1, 2, 1), rngs=3)
    cj.save_weights(pretrained, tmp_path / "w")
    config = _config(
        **{
            "model.name": "",
            "model.depths": (),
            "model.dims": (),
            "model.init_from": str(tmp_path / "w"),
            "model.reset_head": True,
        }
    )
    s = setup_lib.build(config)
    assert s.model_cfg.depths == (1, 1, 2, 1) and s.model_cfg.dims == (40, 80, 160, 320) and not s.model_cfg.use_grn
    assert s.model_cfg.num_classes == 10 and "with a fresh classifier" in s.pretrained
    explicit = setup_lib.model_config_of(_config(**{"model.name": "", "model.init_from": str(tmp_path / "w")}), 10)
    assert explicit.depths == (1, 1, 1, 1) and explicit.dims == (16, 24, 32, 48)  # explicit keys win


def test_batch_sizes_that_cannot_work_are_config_errors():
    with pytest.raises(ConfigError, match="larger than the training set .1437 images."):
        setup_lib.build(_config(batch_size=2048))
    import jax

    from convnext_jax.train.parallel import data_parallel
    from convnext_jax.train.tasks import Classification

    layout = data_parallel([jax.devices()[0]] * 1)
    config = _config(batch_size=64, **{"optim.grad_accum_steps": 4})
    assert setup_lib.micro_batch_per_process(config, layout, Classification(10)) == 16
    with pytest.raises(
        ConfigError,
        match=r"micro-batch per device \(15\) must be even: use a batch_size that is a "
        "multiple of 8",
    ):
        setup_lib.micro_batch_per_process(
            _config(batch_size=60, **{"optim.grad_accum_steps": 4}), layout, Classification(10, pairs_images=True)
        )
