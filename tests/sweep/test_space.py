"""Search spaces: parsing every kind, errors naming the bad part, keys checked against the config
(with the closest name), grid points, applying a point to a config."""

import optuna
import pytest

from configs.common import tiny_study_base
from convnext_jax.sweep import SearchSpaceError, parse_space
from convnext_jax.sweep.space import apply_params, grid_points, validate_keys


def test_parse_every_kind():
    dims = parse_space(
        "optim.lr: loguniform(1e-5, 1e-2); batch_size: grid(32, 64); model.name: choice(convnext_atto,"
        " 'convnextv2_atto'); optim.weight_decay: loggrid(1e-5, 1e-1, 5); data.workers: int(0, 8, 2);"
        " seed: logint(1, 100); label_smoothing: uniform(0.0, 0.2)"
    )
    by_key = {d.key: d for d in dims}
    assert by_key["model.name"].values == ("convnext_atto", "convnextv2_atto")
    assert by_key["optim.weight_decay"].values == (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
    assert by_key["optim.lr"].values is None
    trial = optuna.create_study().ask()
    lr = by_key["optim.lr"].suggest(trial)
    assert 1e-5 <= lr <= 1e-2 and by_key["data.workers"].suggest(trial) in (0, 2, 4, 6, 8)


@pytest.mark.parametrize(
    "text, message",
    [
        ("optim.lr loguniform(1e-5, 1e-2)", "expected 'config.key: kind"),
        ("optim.lr: lognormal(1, 2)", "unknown distribution 'lognormal'"),
        ("optim.lr: loguniform(1e-2, 1e-5)", "lo < hi"),
        ("optim.lr: loguniform(0, 1)", "log scale needs lo > 0"),
        ("optim.lr: grid()", "at least one value"),
        ("optim.lr: grid(1, 1)", "repeated values"),
        ("optim.lr: grid(1e-3; batch_size: grid(1)", "cannot parse"),
        ("optim.lr: grid(1e-3); optim.lr: grid(1e-4)", "appears twice"),
        ("data.workers: int(0.5, 4)", "integers"),
    ],
)
def test_bad_spaces_name_the_problem(text, message):
    with pytest.raises(SearchSpaceError, match=message):
        parse_space(text)


def test_unknown_keys_suggest_the_closest():
    config = tiny_study_base()
    with pytest.raises(SearchSpaceError, match="did you mean 'weight_decay'"):
        validate_keys(parse_space("optim.weight_dacay: grid(0.1)"), config)
    with pytest.raises(SearchSpaceError, match="not a config section"):
        validate_keys(parse_space("optimizer.lr: grid(0.1)"), config)
    with pytest.raises(SearchSpaceError, match="did you mean 'depth_multiplier'"):
        validate_keys(parse_space("model.depth_mult: grid(1.0)"), config)
    validate_keys(parse_space("model.depth_multiplier: grid(1.0, 2.0); optim.lr: grid(1e-3)"), config)


def test_apply_params_and_accumulation():
    config = apply_params(tiny_study_base(), {"batch_size": 128.0, "optim.lr": 1, "model.depth_multiplier": 2.0})
    assert config.batch_size == 128 and isinstance(config.batch_size, int)
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert config.model.depth_multiplier == 2.0
    with pytest.raises(AttributeError):
        config.not_a_key = 1  # still locked
    assert grid_points(parse_space("a: grid(1, 2); b: choice(x, y)")) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]
