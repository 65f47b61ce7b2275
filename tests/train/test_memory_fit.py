"""device_memory_gb: the largest micro-batch per device whose compiled step fits, the accumulation
steps derived from it, the peaks cached; and the run is the same model as without accumulation."""

import dataclasses
import json

import ml_collections
import pytest

from configs import embedded_digits
from convnext_jax.errors import ConfigError
from convnext_jax.sweep.space import apply_params
from convnext_jax.train import train_and_evaluate
from convnext_jax.train.memory_fit import MARGIN, PeakCache, candidates, fit_micro_batch
from convnext_jax.train.metrics import read_metrics
from convnext_jax.train.parallel import make_layout


def _budget_config(gb: float, batch: int = 64, **model) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(
        {
            "device_memory_gb": gb,
            "batch_size": batch,
            "model": {"remat": "none", "dtype": "float32", **model},
        }
    )
    config.lock()
    return config


def test_the_largest_fitting_divisor_is_found_by_bisection_and_cached(tmp_path):
    assert candidates(12, 2) == [12, 6, 4, 2] and candidates(7, 1) == [7, 1]
    layout = make_layout(1, 1)
    calls = []

    def peak_of(micro, accum):  # a step whose peak is 1 GB of state plus 0.1 GB per image
        calls.append((micro, accum))
        return int((1.0 + 0.1 * micro) * 1e9)

    path = str(tmp_path / "memory_fit.json")
    fit = fit_micro_batch(_budget_config(4.0), layout, 1, peak_of, PeakCache(path, {"model": "a"}))
    # allowed 3.6 GB -> micro <= 26: of the divisors of 64, 16 (peak 2.6 GB), with 4 accumulation steps
    assert (fit.micro_per_device, fit.accum, fit.peak_bytes) == (16, 4, int(2.6e9))
    assert calls[0] == (64, 1) and len(calls) == fit.compiled == 5  # largest, smallest, then a bisection
    assert "batch 64 = 1 device(s) x 16 x 4 accumulation step(s)" in fit.describe() and "peak 2.60 GB" in fit.describe()
    calls.clear()
    again = fit_micro_batch(_budget_config(4.0), layout, 1, peak_of, PeakCache(path, {"model": "a"}))
    assert again == dataclasses.replace(fit, compiled=0) and calls == []  # every peak from the file
    other = fit_micro_batch(_budget_config(4.0), layout, 2, peak_of, PeakCache(path, {"model": "b"}))
    assert other.compiled > 0  # another shape: compiled again

    with pytest.raises(ConfigError) as info:
        fit_micro_batch(_budget_config(1.0), layout, 1, peak_of, PeakCache(None, {"model": "a"}))
    message = str(info.value)
    assert "even 1 image(s) per device do not fit: the step's peak is 1.10 GB" in message
    assert "model.remat=full" in message and "model.dtype=bfloat16" in message
    assert f"above {1 - MARGIN:.0%} of the budget" in message


def _digits(workdir, **overrides):
    config = apply_params(
        embedded_digits.get_config(),
        {
            "model.dims": (16, 24, 32, 48),
            "model.depths": (1, 1, 1, 1),
            "model.drop_path_rate": 0.0,  # dropout keys differ per micro-batch; without it the maths is the same
            "data.augment.mixup_alpha": 0.0,
            "data.augment.cutmix_alpha": 0.0,
            "data.augment.re_prob": 0.0,
            "num_epochs": 1,
            "log_every": 5,
            **overrides,
        },
    )
    return train_and_evaluate(config, str(workdir))


def test_a_budget_that_forces_accumulation_trains_the_same_model(tmp_path, capsys):
    plain = _digits(tmp_path / "plain", device_memory_gb=100.0)  # everything fits: no accumulation
    assert plain["grad_accum_steps"] == 1 and plain["micro_batch_per_device"] == 64
    peak = plain["step_peak_gb"]
    budget = 0.75 * peak / (1 - MARGIN)  # 64 images no longer fit; 32 with 2 steps do (~0.55 of the peak)
    fitted = _digits(
        tmp_path / "fitted", device_memory_gb=budget, device_memory_cache=str(tmp_path / "plain")
    )  # the 64-image peak comes from the first run's cache
    assert fitted["grad_accum_steps"] == 2 and fitted["micro_batch_per_device"] == 32
    assert fitted["global_batch"] == plain["global_batch"] == 64 and fitted["step_peak_gb"] < 0.75 * peak
    assert "batch 64 = 1 device(s) x 32 x 2 accumulation step(s)" in capsys.readouterr().out
    cache = json.loads((tmp_path / "plain" / "memory_fit.json").read_text())
    assert {"64x1", "32x2"} <= set(next(iter(cache.values()))["peaks"])
    losses = [
        [r["train_loss"] for r in read_metrics(str(tmp_path / d)) if "train_loss" in r] for d in ("plain", "fitted")
    ]
    assert len(losses[0]) == len(losses[1]) > 2
    for a, b in zip(*losses):
        assert abs(a - b) <= 1e-5 * abs(a), (a, b)
    assert abs(plain["final_val_loss"] - fitted["final_val_loss"]) <= 1e-5 * plain["final_val_loss"]
