"""A run's directory: its stored config, what may change when coming back, cleaning up a failed start."""

import json
import os

import pytest

from configs.common import tiny_study_base
from convnext_jax.errors import ConfigError
from convnext_jax.train.workdir import RunDir, config_from_json, differing


def test_stored_config_round_trips_with_tuples(tmp_path):
    config = tiny_study_base()
    run = RunDir(str(tmp_path / "run"))
    assert not run.exists
    with pytest.raises(ConfigError, match="not a training workdir"):
        run.stored_config()
    run.write_config(config)
    stored = run.stored_config()
    assert stored.model.dims == (16, 24, 32, 48) and isinstance(stored.data.mean, tuple)
    assert differing(config, stored, ["model.dims", "optim.lr", "data.mean"]) == []
    with pytest.raises(ConfigError, match="does not fit this version's config keys"):
        config_from_json(json.dumps({"optim": {"lrr": 1.0}}), "x.json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        config_from_json("{", "x.json")


def test_what_may_change_when_coming_back(tmp_path):
    config = tiny_study_base()
    run = RunDir(str(tmp_path))
    run.write_config(config)
    with config.unlocked():
        config.log_every, config.model.remat, config.data.workers = 7, "full", 2  # how it runs: allowed
    run.check_resumable(config)
    with config.unlocked():
        config.num_epochs = 5
        config.optim.lr = 0.5
    with pytest.raises(ConfigError, match="changed: num_epochs: 3 -> 5; optim.lr: 0.002 -> 0.5.* --extend"):
        run.check_resumable(config)
    with pytest.raises(ConfigError, match="optim.lr: 0.002 -> 0.5"):
        run.check_resumable(config, extend=True)  # extend lets num_epochs grow, nothing else
    with config.unlocked():
        config.optim.lr = 0.002
    run.check_resumable(config, extend=True)
    with config.unlocked():
        config.num_epochs = 2
    with pytest.raises(ConfigError, match="--extend trains longer"):
        run.check_resumable(config, extend=True)


def test_a_failed_start_leaves_nothing_behind(tmp_path):
    new = RunDir(str(tmp_path / "new"))
    before = new.listing()
    os.makedirs(new.path)
    (tmp_path / "new" / "config.json").write_text("{}")
    new.remove_new_files(before)
    assert not os.path.exists(new.path)
    existing = RunDir(str(tmp_path))
    (tmp_path / "mine.txt").write_text("the user's")
    before = existing.listing()
    os.makedirs(tmp_path / "checkpoints")
    existing.remove_new_files(before)
    assert sorted(os.listdir(tmp_path)) == ["mine.txt"]
