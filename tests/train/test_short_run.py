"""A run too short for its recipe says so at the start (warmup, EMA horizon, EMA selection)."""

import jax
import pytest

from configs import common
from convnext_jax.train import engine
from convnext_jax.train.config import base_config
from convnext_jax.train.short_run import ema_horizon, short_run_notes, summary_fields


def _config(**values):
    config = base_config()
    for key, value in values.items():
        node = config
        *parents, leaf = key.split(".")
        for name in parents:
            node = node[name]
        node[leaf] = value
    return config


def test_a_run_long_enough_for_its_recipe_gets_no_note():
    config = _config(num_epochs=30, **{"optim.warmup_epochs": 1}, ema_decay=0.99)
    assert short_run_notes(config, 22, 660, 22) == []
    assert summary_fields(config, 660) == {"ema_horizon_steps": 100, "ema_meaningful": True}
    assert summary_fields(_config(ema_decay=0.0), 660) == {}


def test_the_fcmae_recipe_cut_to_two_epochs_keeps_forty_warmup_epochs_and_says_so():
    config = common.fcmae_recipe("convnextv2_atto", "embedded:digits")
    config.num_epochs = 2
    (note,) = short_run_notes(config, 22, 44, 40 * 22)
    assert "the LR warmup (40 epochs) of 880 steps is as long as the whole run (2 epochs, 44 steps)" in note
    assert "Lower optim.warmup_epochs (e.g. 0)" in note


def test_an_ema_longer_than_the_run_is_reported_as_not_meaningful():
    config = _config(num_epochs=30, ema_decay=0.9999, select_on="val_top1_ema", **{"optim.warmup_epochs": 0})
    notes = short_run_notes(config, 22, 660, 0)
    assert len(notes) == 2 and ema_horizon(0.9999) == pytest.approx(10000)
    assert "ema_decay 0.9999 averages over ~10000 steps, more than this run's 660" in notes[0]
    assert "Use ema_decay 0.98 or less" in notes[0] and "select_on='val_top1_ema'" in notes[1]
    assert summary_fields(config, 660) == {"ema_horizon_steps": 10000, "ema_meaningful": False}


def test_the_data_wait_warning_fits_the_source_and_is_silent_on_a_cpu_backend(monkeypatch):
    class Setup:
        config = _config(**{"data.source": "embedded:digits"})

    assert engine.data_wait_advice(Setup, 0.5) is None  # the step and the pipeline share the CPU's cores
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert "raise data.threads" in engine.data_wait_advice(Setup, 0.5)
    assert "prepared dataset" not in engine.data_wait_advice(Setup, 0.5)
    Setup.config = _config(**{"data.source": "folder:/data/x"})
    assert "raise data.workers (now 0), or train on a prepared dataset" in engine.data_wait_advice(Setup, 0.5)
