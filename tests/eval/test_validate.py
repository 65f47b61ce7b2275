"""python -m convnext_jax.validate: a workdir (latest, best, EMA), the same weights exported to a
PyTorch file (same numbers), results CSV in timm's columns, and short errors."""

import csv
import os
import subprocess
import sys

import pytest

from convnext_jax.train import train_and_evaluate
from convnext_jax.train.metrics import read_metrics
from convnext_jax.validate import COLUMNS, main

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from tests.train.test_run import _config  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Digits, 2 epochs with EMA, best checkpoint by the better weights."""
    workdir = tmp_path_factory.mktemp("validate") / "run"
    train_and_evaluate(_config(num_epochs=2, ema_decay=0.6, select_on="best"), str(workdir))
    return workdir


def _validate(capsys, *argv):
    assert main([str(a) for a in argv]) == 0
    return capsys.readouterr().out


def test_workdir_latest_and_ema_match_the_runs_own_evaluation(run, tmp_path, capsys):
    csv_path = tmp_path / "results.csv"
    last = [r for r in read_metrics(str(run)) if "val_top1" in r][-1]
    out = _validate(capsys, run, "--results_csv", csv_path, "--batch_size", 64, "--pictures", tmp_path / "pics")
    _validate(capsys, run, "--ema", "--results_csv", csv_path)
    assert "| model | top1 |" in out and "convnextv2_atto" in out
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
        f.seek(0)
        assert tuple(next(csv.reader(f))) == COLUMNS
    assert len(rows) == 2
    plain, ema = rows
    assert float(plain["top1"]) == pytest.approx(100 * last["val_top1"], abs=1e-3)
    assert float(plain["loss"]) == pytest.approx(last["val_loss"], abs=1e-4)
    assert float(ema["top1"]) == pytest.approx(100 * last["val_top1_ema"], abs=1e-3)
    assert float(plain["top1_err"]) == pytest.approx(100 - float(plain["top1"]), abs=1e-3)
    assert plain["img_size"] == "32" and plain["crop_pct"] == "1.0" and plain["interpolation"] == "bicubic"
    assert int(plain["count"]) == 360 and float(plain["img_per_s"]) > 0 and float(plain["param_count"]) > 0
    assert ema["weights"].endswith("EMA") and not plain["weights"].endswith("EMA")
    with open(tmp_path / "pics" / "per_class.csv", newline="") as f:
        per_class = list(csv.DictReader(f))
    assert len(per_class) == 10 and sum(int(r["correct"]) for r in per_class) == round(last["val_top1"] * 360)
    assert (tmp_path / "pics" / "confusion.png").stat().st_size > 1000


def test_best_picks_the_checkpoint_and_weights_of_the_runs_selection(run, tmp_path, capsys):
    evals = [r for r in read_metrics(str(run)) if "val_top1_best" in r]
    best = max(evals, key=lambda r: r["val_top1_best"])
    _validate(capsys, run, "--checkpoint", "best", "--results_csv", tmp_path / "r.csv")
    with open(tmp_path / "r.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert float(row["top1"]) == pytest.approx(100 * best["val_top1_best"], abs=1e-3)
    assert f"step {best['step']}" in row["weights"]


def test_exported_pytorch_weights_validate_to_the_same_numbers(run, tmp_path, capsys, monkeypatch):
    from convnext_jax.weights import pytorch

    reads = []
    read_state_dict = pytorch.read_state_dict
    monkeypatch.setattr(pytorch, "read_state_dict", lambda path: reads.append(path) or read_state_dict(path))
    pth = tmp_path / "atto.pth"
    result = subprocess.run(
        [sys.executable, "-m", "convnext_jax.convert", str(run), str(pth)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    _validate(capsys, run, "--results_csv", tmp_path / "r.csv")
    _validate(
        capsys,
        pth,
        "--data",
        "embedded:digits",
        "--image_size",
        32,
        "--crop_pct",
        1.0,
        "--mean",
        0.5,
        0.5,
        0.5,
        "--std",
        0.5,
        0.5,
        0.5,
        "--results_csv",
        tmp_path / "r.csv",
    )
    with open(tmp_path / "r.csv", newline="") as f:
        ours, theirs = list(csv.DictReader(f))
    assert theirs["top1"] == ours["top1"] and float(theirs["loss"]) == pytest.approx(float(ours["loss"]), abs=1e-4)
    assert ours["model"] == "convnextv2_atto (custom depths/dims)" and theirs["model"] == "convnextv2 (custom)"
    assert reads == [str(pth)]  # the architecture is inferred from the same read as the weights loaded


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "convnext_tiny"], "not convnext_tiny"),
        (["--data", "synthetic"], "has 1000 classes but the weights' classifier has 10"),
        (["--checkpoint", "nine"], "--checkpoint must be latest, best or a step number"),
        (["--checkpoint", "7"], "has no checkpoint at step 7"),
        (["--data", "tfds:imagenet_v2", "--data_dir", "/nonexistent"], "imagenet_v2"),
    ],
)
def test_mistakes_are_short_errors(run, argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        main([str(run), *argv])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith("error: ") and message in err


def test_a_mistake_on_the_command_line_is_one_line_without_a_traceback(run):
    result = subprocess.run(
        [sys.executable, "-m", "convnext_jax.validate", str(run), "--model", "convnext_tiny"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr and "not convnext_tiny" in result.stderr


def test_a_pytorch_file_needs_data(tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"not really")
    result = subprocess.run(
        [sys.executable, "-m", "convnext_jax.validate", str(weights)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 2 and "--data is needed" in result.stderr


def test_results_csv_with_other_columns_is_refused(run, tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit):
        main([str(run), "--results_csv", str(other)])
    assert other.read_text() == "a,b\n1,2\n"
