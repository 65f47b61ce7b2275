"""python -m convnext_jax.average: the mean of the top-k kept checkpoints by the run's metric,
written as a weights directory and validated; short errors."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from convnext_jax.average import main
from convnext_jax.train import train_and_evaluate
from convnext_jax.train.checkpoint import read_checkpoint_params
from convnext_jax.train.metrics import read_metrics
from convnext_jax.weights.directory import read_params

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from tests.train.test_run import _config  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("average") / "run"
    train_and_evaluate(_config(num_epochs=3, ema_decay=0.6, **{"checkpoint.keep": 3}), str(workdir))
    return workdir


def _flat(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("ema", [False, True])
def test_the_top_k_checkpoints_by_the_metric_are_averaged_and_validated(run, tmp_path, capsys, ema):
    metric = "val_top1_ema" if ema else "val_loss"
    evals = [r for r in read_metrics(str(run)) if metric in r]
    ranked = sorted(evals, key=lambda r: r[metric], reverse=ema)[:2]  # top-1 higher, loss lower is better
    out = tmp_path / "avg"
    assert (
        main(
            [
                "--workdir",
                str(run),
                "--top_k",
                "2",
                "--metric",
                metric,
                "--out",
                str(out),
                "--results_csv",
                str(tmp_path / "r.csv"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr()
    assert "| convnextv2_atto (custom depths/dims) avg2 |" in printed.out
    assert all(f"{r['step']} ({metric}" in printed.err for r in ranked)
    parts = [_flat(read_checkpoint_params(str(run), r["step"], use_ema=ema)) for r in ranked]
    for got, a, b in zip(_flat(read_params(out)), *parts):
        np.testing.assert_allclose(got, (a.astype(np.float64) + b) / 2, rtol=1e-6, atol=1e-7)
    assert (tmp_path / "r.csv").read_text().count("\n") == 2  # header + the row


def test_more_than_the_kept_checkpoints_is_a_short_error(run):
    result = subprocess.run(
        [sys.executable, "-m", "convnext_jax.average", "--workdir", str(run), "--top_k", "4"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--top_k 4, but only 3 of the kept checkpoints" in result.stderr and "checkpoint.keep" in result.stderr
    assert not (run / "averaged_top4").exists()


def test_the_averaged_weights_directory_validates_as_the_run_did(run, tmp_path, capsys):
    """The weights directory carries the run's evaluation (digits at 32 px, mean/std 0.5), so
    `validate DIR` alone gives the number `average` printed (before: a 224 px ImageNet evaluation)."""
    from convnext_jax.validate import main as validate_main

    out = tmp_path / "avg"
    assert main(["--workdir", str(run), "--top_k", "2", "--out", str(out)]) == 0
    averaged_row = capsys.readouterr().out.splitlines()[-1]
    assert validate_main([str(out)]) == 0
    printed = capsys.readouterr()
    validated_row = printed.out.splitlines()[-1]
    columns = lambda row: [c.strip() for c in row.split("|")[2:8]]  # top1, top5, loss, params, gmacs, img_size
    assert columns(validated_row) == columns(averaged_row) and columns(validated_row)[5] == "32"
    assert "(360 images" in printed.err
