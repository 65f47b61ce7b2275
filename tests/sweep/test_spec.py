"""Study configs: every error before any trial runs; the shipped studies validate."""

import importlib.util
import os

import pytest

from configs.common import tiny_study_base
from convnext_jax.sweep import SearchSpaceError, StorageError, create_study, with_sweep
from convnext_jax.sweep.space import apply_params, grid_points
from convnext_jax.sweep.spec import split_config
from convnext_jax.sweep.study import open_storage


def test_study_config_errors_come_before_any_trial(tmp_path):
    with pytest.raises(SearchSpaceError, match="search space is empty"):
        create_study(with_sweep(tiny_study_base(), space=""), str(tmp_path))
    with pytest.raises(SearchSpaceError, match="did you mean 'lr'"):
        create_study(with_sweep(tiny_study_base(), space="optim.lrr: grid(1e-3)"), str(tmp_path))
    with pytest.raises(SearchSpaceError, match="grid sampler needs finite values"):
        create_study(with_sweep(tiny_study_base(), space="optim.lr: loguniform(1e-5, 1e-2)"), str(tmp_path))
    with pytest.raises(SearchSpaceError, match="num_trials"):
        create_study(
            with_sweep(tiny_study_base(), space="optim.lr: loguniform(1e-5, 1e-2)", sampler="tpe"), str(tmp_path)
        )
    with pytest.raises(SearchSpaceError, match="no `sweep` section"):
        split_config(tiny_study_base())
    both = with_sweep(apply_params(tiny_study_base(), {"device_memory_gb": 24.0}), space="optim.lr: grid(1e-3)")
    both.sweep.max_device_batch = 32
    with pytest.raises(SearchSpaceError, match="max_device_batch and device_memory_gb both choose"):
        create_study(both, str(tmp_path))
    assert not os.listdir(tmp_path)  # nothing was created
    bad = with_sweep(tiny_study_base(), space="optim.lr: grid(1e-3)", storage="nosuchdialect://x/y")
    with pytest.raises(StorageError, match="cannot open the study storage 'nosuchdialect://x/y'"):
        open_storage(split_config(bad)[0], str(tmp_path))
    missing_dir = with_sweep(
        tiny_study_base(), space="optim.lr: grid(1e-3)", storage=f"sqlite:///{tmp_path}/no/such/dir/study.db"
    )
    with pytest.raises(StorageError, match="cannot open the study storage"):
        create_study(missing_dir, str(tmp_path / "w"))


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
