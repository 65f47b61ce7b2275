"""Search-space parsing and validation, study-config errors before any trial, surge fit."""

import importlib.util
import os

import numpy as np
import optuna
import pytest

from convnext_jax.sweep import SearchSpaceError, StorageError, create_study, parse_space, with_sweep
from convnext_jax.sweep.presets import tiny_baseline
from convnext_jax.sweep.space import apply_params, grid_points, validate_keys
from convnext_jax.sweep.spec import split_config
from convnext_jax.sweep.study import derive_accumulation, open_storage
from convnext_jax.sweep.surge import fit_surge, optimal_lr, surge_curve


def test_parse_every_kind():
    dims = parse_space("optim.lr: loguniform(1e-5, 1e-2); batch_size: grid(32, 64); model.name: choice(convnext_atto,"
                       " 'convnextv2_atto'); optim.weight_decay: loggrid(1e-5, 1e-1, 5); data.workers: int(0, 8, 2);"
                       " seed: logint(1, 100); label_smoothing: uniform(0.0, 0.2)")
    by_key = {d.key: d for d in dims}
    assert by_key["model.name"].values == ("convnext_atto", "convnextv2_atto")
    assert by_key["optim.weight_decay"].values == (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
    assert by_key["optim.lr"].values is None
    trial = optuna.create_study().ask()
    lr = by_key["optim.lr"].suggest(trial)
    assert 1e-5 <= lr <= 1e-2 and by_key["data.workers"].suggest(trial) in (0, 2, 4, 6, 8)


@pytest.mark.parametrize("text, message", [
    ("optim.lr loguniform(1e-5, 1e-2)", "expected 'config.key: kind"),
    ("optim.lr: lognormal(1, 2)", "unknown distribution 'lognormal'"),
    ("optim.lr: loguniform(1e-2, 1e-5)", "lo < hi"),
    ("optim.lr: loguniform(0, 1)", "log scale needs lo > 0"),
    ("optim.lr: grid()", "at least one value"),
    ("optim.lr: grid(1, 1)", "repeated values"),
    ("optim.lr: grid(1e-3; batch_size: grid(1)", "cannot parse"),
    ("optim.lr: grid(1e-3); optim.lr: grid(1e-4)", "appears twice"),
    ("data.workers: int(0.5, 4)", "integers"),
])
def test_bad_spaces_name_the_problem(text, message):
    with pytest.raises(SearchSpaceError, match=message):
        parse_space(text)


def test_unknown_keys_suggest_the_closest():
    config = tiny_baseline()
    with pytest.raises(SearchSpaceError, match="did you mean 'weight_decay'"):
        validate_keys(parse_space("optim.weight_dacay: grid(0.1)"), config)
    with pytest.raises(SearchSpaceError, match="not a config section"):
        validate_keys(parse_space("optimizer.lr: grid(0.1)"), config)
    with pytest.raises(SearchSpaceError, match="not a model option"):
        validate_keys(parse_space("model.options.depth_mult: grid(1.0)"), config)
    validate_keys(parse_space("model.options.depth_multiplier: grid(1.0, 2.0); optim.lr: grid(1e-3)"), config)


def test_study_config_errors_come_before_any_trial(tmp_path):
    with pytest.raises(SearchSpaceError, match="search space is empty"):
        create_study(with_sweep(tiny_baseline(), space=""), str(tmp_path))
    with pytest.raises(SearchSpaceError, match="did you mean 'lr'"):
        create_study(with_sweep(tiny_baseline(), space="optim.lrr: grid(1e-3)"), str(tmp_path))
    with pytest.raises(SearchSpaceError, match="grid sampler needs finite values"):
        create_study(with_sweep(tiny_baseline(), space="optim.lr: loguniform(1e-5, 1e-2)"), str(tmp_path))
    with pytest.raises(SearchSpaceError, match="num_trials"):
        create_study(with_sweep(tiny_baseline(), space="optim.lr: loguniform(1e-5, 1e-2)", sampler="tpe"),
                     str(tmp_path))
    with pytest.raises(SearchSpaceError, match="no `sweep` section"):
        split_config(tiny_baseline())
    assert not os.listdir(tmp_path)  # nothing was created
    bad = with_sweep(tiny_baseline(), space="optim.lr: grid(1e-3)", storage="nosuchdialect://x/y")
    with pytest.raises(StorageError, match="cannot open the study storage 'nosuchdialect://x/y'"):
        open_storage(split_config(bad)[0], str(tmp_path))
    missing_dir = with_sweep(tiny_baseline(), space="optim.lr: grid(1e-3)",
                             storage=f"sqlite:///{tmp_path}/no/such/dir/study.db")
    with pytest.raises(StorageError, match="cannot open the study storage"):
        create_study(missing_dir, str(tmp_path / "w"))


def test_grid_queue_and_reopening(tmp_path):
    config = with_sweep(tiny_baseline(), space="optim.lr: grid(1e-3, 1e-2); batch_size: grid(32, 64)", seeds=2)
    study = create_study(config, str(tmp_path))
    waiting = study.get_trials()
    assert len(waiting) == 8 and [t.user_attrs["seed"] for t in waiting[:2]] == [0, 1]
    assert waiting[2].system_attrs["fixed_params"] == {"optim.lr": 1e-3, "batch_size": 64}  # grid order, seeds inner
    assert len(create_study(config, str(tmp_path)).get_trials()) == 8  # reopening queues nothing twice
    other = with_sweep(tiny_baseline(), space="optim.lr: grid(1e-4)")
    with pytest.raises(SearchSpaceError, match="different sweep"):
        create_study(other, str(tmp_path))


def test_apply_params_and_accumulation():
    config = apply_params(tiny_baseline(), {"batch_size": 128.0, "optim.lr": 1, "model.options.depth_multiplier": 2.0})
    assert config.batch_size == 128 and isinstance(config.batch_size, int)
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert config.model.options.depth_multiplier == 2.0
    with pytest.raises(AttributeError):
        config.not_a_key = 1  # still locked
    assert derive_accumulation(1024, 8, 64) == 2 and derive_accumulation(64, 1, 64) == 1
    assert derive_accumulation(96, 1, 64) == 2  # 48 per micro-batch
    with pytest.raises(SearchSpaceError, match="max_device_batch"):
        derive_accumulation(36, 8, 64)
    assert grid_points(parse_space("a: grid(1, 2); b: choice(x, y)")) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]


def test_surge_fit_recovers_the_peak():
    batches = np.array([32, 64, 128, 256, 512, 1024.0])
    fit = fit_surge(batches, surge_curve(batches, 2e-3, 200.0) * np.exp([0.02, -0.03, 0.01, 0.0, -0.02, 0.03]))
    assert fit["inside"] and 150 < fit["peak_batch"] < 270 and 1.6e-3 < fit["lr_max"] < 2.5e-3
    rising = fit_surge(batches[:3], surge_curve(batches[:3], 1e-3, 5000.0))
    assert not rising["inside"]  # the optimum keeps rising: B* is only bounded from below
    assert fit_surge([32, 64], [1e-3, 2e-3]) is None
    assert optimal_lr([1e-4, 1e-3, 1e-2], [0.5, 0.8, 0.5]) == pytest.approx(1e-3, rel=1e-6)  # symmetric
    assert optimal_lr([1e-4, 1e-3, 1e-2], [0.1, 0.2, 0.9]) == pytest.approx(1e-2)  # at the edge


@pytest.mark.parametrize("name", ["baseline", "lr", "batch", "weight_decay", "architecture"])
@pytest.mark.parametrize("arg", ["tiny", "folder:/data/mine"])
def test_shipped_study_configs_validate(name, arg):
    spec = importlib.util.spec_from_file_location(name, os.path.join("configs", "sweeps", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sweep, train = split_config(module.get_config(arg))
    assert sweep.seeds >= (1 if arg == "tiny" else 3)  # the real studies repeat every point
    points = grid_points(list(sweep.dims)) if sweep.dims else [{}]
    for point in points:
        apply_params(train, point)  # every point builds a valid config
    if name == "batch":
        assert {"batch_size", "optim.lr"} <= {d.key for d in sweep.dims} and sweep.max_device_batch == 64


def test_report_estimates_the_surge_peak_from_lr_batch_points(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convnext_jax.sweep.report import _lr_batch_plots

    lrs = np.exp(np.linspace(np.log(1e-4), np.log(1e-1), 13))
    points = []
    for batch in (32, 64, 128, 256, 512, 1024):
        best = surge_curve(np.array([batch], float), 3e-3, 128.0)[0]
        for lr in lrs:  # accuracy peaks at the surge curve's LR, quadratic in log LR
            points.append({"params": {"batch_size": batch, "optim.lr": float(lr)},
                           "best_val_top1": (0.9 - 0.05 * (np.log(lr) - np.log(best)) ** 2, 0.0)})
    result = _lr_batch_plots(plt, points, str(tmp_path))
    assert result["lr_at_edge"] == [] and 100 < result["surge"]["peak_batch"] < 165
    assert (tmp_path / "optimal_lr_vs_batch.png").exists() and (tmp_path / "accuracy_vs_lr_by_batch.png").exists()
    edge = [p for p in points if p["params"]["optim.lr"] <= lrs[3]]  # every optimum above the swept range
    result = _lr_batch_plots(plt, edge, str(tmp_path))
    assert result["surge"] is None and "widen optim.lr" in result["surge_note"]
