"""python -m convnext_jax.compare on CPU: the step-for-step parity check (shared init and batches,
no stochastic parts: the train losses agree to 1e-4 over 50 steps in fp32); two seeds of the
recipe with the report (statistics, curves, throughput); a finished comparison is not trained
again; bad input is one line."""

import json
import os
import subprocess
import sys

import pytest

from configs import embedded_digits
from convnext_jax.compare.recipe import seeds_of, unsupported
from convnext_jax.errors import ConfigError
from convnext_jax.sweep.space import apply_params

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TINY = ["--config.model.dims=(16, 24, 32, 48)", "--config.model.depths=(1, 1, 1, 1)"]


def _compare(workdir, *args):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "convnext_jax.compare",
            "--config",
            "configs/embedded_digits.py",
            "--workdir",
            str(workdir),
            *TINY,
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    return result.returncode, result.stdout, result.stderr


def test_step_for_step_parity_over_50_steps(tmp_path):
    code, out, err = _compare(tmp_path, "--parity_steps", "50")
    assert code == 0, (out + err)[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    parity = results["parity"]
    assert len(parity["jax"]) == len(parity["pytorch"]) == 50
    assert parity["max_relative_difference"] < 1e-4, parity
    assert parity["jax"][-1] < 0.9 * parity["jax"][0]  # it trained
    assert (tmp_path / "parity.png").stat().st_size > 0 and "Step-for-step parity" in (
        tmp_path / "report.md"
    ).read_text()


def test_two_seeds_report_and_a_finished_comparison_is_not_run_again(tmp_path):
    code, out, err = _compare(tmp_path, "--seeds", "0,1", "--config.num_epochs=1")
    assert code == 0, (out + err)[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    top1 = results["statistics"]["best_val_top1"]
    assert top1["ci95"] is not None and top1["welch_t"] is not None and top1["differs"] in (True, False)
    for seed in (0, 1):  # shared init and batches: the same validation loss after one epoch
        ours = json.loads((tmp_path / "jax" / f"seed_{seed}" / "summary.json").read_text())
        theirs = json.loads((tmp_path / "pytorch" / f"seed_{seed}" / "summary.json").read_text())
        assert ours["final_val_loss"] == pytest.approx(theirs["final_val_loss"], rel=1e-3)
        assert abs(ours["final_val_top1"] - theirs["final_val_top1"]) <= 2 / 360
    report = (tmp_path / "report.md").read_text()
    assert "seed noise" in report.splitlines()[2] and "x PyTorch's speed" in report
    assert "| best_val_top1 |" in report and "| pytorch | 1 |" in report
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2  # curves and throughput, embedded
    code, out, err = _compare(tmp_path, "--seeds", "0,1", "--config.num_epochs=1")
    assert code == 0 and "== jax" not in out and "report:" in out  # finished: only the report again
    code, out, err = _compare(tmp_path, "--seeds", "0,1", "--config.num_epochs=2")
    assert code == 2 and "holds a comparison with other settings (config)" in err


def test_native_batches_train_both_sides_each_with_its_own_pipeline(tmp_path):
    code, out, err = _compare(tmp_path, "--batches", "native", "--config.num_epochs=1")
    assert code == 0, (out + err)[-3000:]
    theirs = json.loads((tmp_path / "pytorch" / "seed_0" / "summary.json").read_text())
    assert theirs["batches"] == "native" and theirs["final_val_count"] == 360 and theirs["best_val_top1"] > 0.3
    assert "- batches: native" in (tmp_path / "report.md").read_text()


def test_bad_input_is_one_line(tmp_path):
    code, out, err = _compare(tmp_path, "--config.task=fcmae")
    assert code == 2 and "the PyTorch side cannot reproduce: task=fcmae" in err and "Traceback" not in err, err[-2000:]
    assert not (tmp_path / "jax").exists()
    config = apply_params(embedded_digits.get_config(), {"optim.name": "sgd", "loss": "bce", "data.aug_repeats": 3})
    assert unsupported(config) == [
        "loss=bce (the PyTorch side trains with cross-entropy)",
        "optim.name=sgd (the PyTorch side runs AdamW)",
        "data.aug_repeats (repeated augmentation)",
    ]
    with pytest.raises(ConfigError, match="--seeds takes integers separated by commas"):
        seeds_of(["a", "b"])
