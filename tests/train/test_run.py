"""End-to-end training on the embedded dataset: learning, outputs, config errors, exact resume after SIGKILL."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from configs import embedded_digits  # noqa: E402
from convnext_jax.errors import ConfigError  # noqa: E402
from convnext_jax.sweep.space import apply_params  # noqa: E402
from convnext_jax.train import evaluate_checkpoint, train_and_evaluate  # noqa: E402
from convnext_jax.train.metrics import read_metrics  # noqa: E402

TINY = ["--config.model.dims=(16, 24, 32, 48)", "--config.log_every=5"]


def _config(**overrides):
    """The main job's config, smaller, with {dotted key: value} overrides (as --config.key=value)."""
    return apply_params(embedded_digits.get_config(), {"model.dims": (16, 24, 32, 48), "log_every": 5, **overrides})


def test_training_learns_and_writes_outputs(tmp_path):
    config = _config(num_epochs=2)
    summary = train_and_evaluate(config, str(tmp_path))
    assert summary["best_val_top1"] > 0.5  # 10 classes: chance is 0.1
    assert summary["final_val_count"] == 360  # every val sample counted exactly once (padded last batch)
    records = read_metrics(str(tmp_path))
    train_losses = [r["train_loss"] for r in records if "train_loss" in r]
    assert train_losses[-1] < train_losses[0]
    assert any("val_top1" in r for r in records) and all(r["img_per_s"] > 0 for r in records if "img_per_s" in r)
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 44
    assert summary["compile_s"] > 0 and summary["finished"]  # compiled once, ahead of the first step
    events = [f for f in os.listdir(tmp_path / "tensorboard") if f.startswith("events.out.tfevents")]
    content = (tmp_path / "tensorboard" / events[0]).read_bytes()
    assert b"train_loss" in content and b"val_top1" in content
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["22", "44"]
    evaluated = evaluate_checkpoint(config, str(tmp_path))  # --mode eval
    assert evaluated["step"] == 44 and evaluated["val_count"] == 360
    assert evaluated["val_top1"] == pytest.approx(summary["final_val_top1"])
    assert evaluated["val_loss"] == pytest.approx(summary["final_val_loss"], rel=1e-5)
    assert (tmp_path / "eval_44.json").exists()
    with open(tmp_path / "per_class.csv", newline="") as f:  # the final evaluation, class by class
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == [str(i) for i in range(10)]
    assert sum(int(r["images"]) for r in rows) == 360
    assert sum(int(r["correct"]) for r in rows) == round(summary["final_val_top1"] * 360)
    assert (tmp_path / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_batch_not_divisible_by_accumulation(tmp_path):
    with pytest.raises(ValueError, match="grad_accum_steps"):
        train_and_evaluate(_config(batch_size=64, **{"optim.grad_accum_steps": 3}), str(tmp_path))


def _run_main(workdir, *extra):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "convnext_jax.main",
            "--config",
            "configs/embedded_digits.py",
            "--workdir",
            str(workdir),
            "--config.num_epochs=2",
            *TINY,
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _final_params(workdir, step=44):
    restored = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))
    return restored["params"]


_KILL_DURING_SAVE = r"""
import os, signal, sys
import grain
from absl import app

original = grain.checkpoint.CheckpointHandler.save


def save(self, directory, *args, **kwargs):  # SIGKILL while orbax writes step 44 (its temporary directory)
    if os.path.basename(os.path.dirname(str(directory))).startswith("44."):
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, directory, *args, **kwargs)


grain.checkpoint.CheckpointHandler.save = save
sys.path.insert(0, os.getcwd())
from convnext_jax.main import main
sys.argv = ["main"] + sys.argv[1:]
app.run(main)
"""


@pytest.fixture(scope="module")
def reference_params(tmp_path_factory):
    """The final parameters of an uninterrupted 2-epoch run (what every interrupted run must end with)."""
    workdir = tmp_path_factory.mktemp("reference")
    reference = _run_main(workdir)
    assert reference.wait(timeout=300) == 0, reference.stdout.read()
    return dict(_flatten(_final_params(workdir)))


def test_resume_after_sigkill_is_exact(tmp_path, reference_params):
    """SIGKILL between saves, and SIGKILL in the middle of a save: both resume from the last
    complete checkpoint and end bit-identical to an uninterrupted run."""
    killed = _run_main(tmp_path / "killed")
    (tmp_path / "kill_during_save.py").write_text(_KILL_DURING_SAVE)
    in_save = subprocess.Popen(
        [
            sys.executable,
            str(tmp_path / "kill_during_save.py"),
            "--config",
            "configs/embedded_digits.py",
            "--workdir",
            str(tmp_path / "in_save"),
            "--config.num_epochs=2",
            *TINY,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 300
    while not (tmp_path / "killed" / "checkpoints" / "22").exists():  # orbax renames when complete
        assert time.time() < deadline and killed.poll() is None, killed.stdout.read() if killed.poll() else ""
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert in_save.wait(timeout=300) == -signal.SIGKILL, in_save.stdout.read()
    leftovers = sorted(os.listdir(tmp_path / "in_save" / "checkpoints"))
    assert leftovers[0] == "22" and len(leftovers) == 2 and leftovers[1].startswith("44.orbax-checkpoint-tmp")
    want = reference_params
    for name in ("killed", "in_save"):
        resumed = _run_main(tmp_path / name)
        output = resumed.communicate(timeout=300)[0]
        assert resumed.returncode == 0, output
        assert "step 44/44" in output and "step 5/44" not in output  # continued from 22, did not restart
        got = dict(_flatten(_final_params(tmp_path / name)))
        assert want.keys() == got.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{name}: {key}")


def _wait_for_step(workdir, proc, step):
    deadline = time.time() + 300
    while True:
        metrics = workdir / "metrics.jsonl"
        if metrics.exists() and any(r.get("step", 0) >= step for r in read_metrics(str(workdir))):
            return
        assert time.time() < deadline and proc.poll() is None, proc.stdout.read() if proc.poll() else ""
        time.sleep(0.1)


def test_preemption_signals_save_mid_epoch_and_resume_exactly(tmp_path, reference_params):
    """SIGTERM and SIGUSR1 (SLURM's warning) during an epoch: the run saves the step it reached,
    exits with 75 within 60 s, and the same command resumes bit-identically."""
    runs = {
        "term": (_run_main(tmp_path / "term"), signal.SIGTERM),
        "usr1": (_run_main(tmp_path / "usr1"), signal.SIGUSR1),
    }
    for name, (proc, _) in runs.items():
        _wait_for_step(tmp_path / name, proc, 5)
    sent = time.time()
    for proc, sig in runs.values():
        proc.send_signal(sig)
    for name, (proc, sig) in runs.items():
        output = proc.communicate(timeout=60)[0]
        assert proc.returncode == 75 and time.time() - sent < 60, output[-3000:]
        step = int(output.split("saved a checkpoint at step ")[1].split(";")[0])
        assert 5 <= step < 44 and f"preempted ({sig.name})" in output
        assert str(step) in os.listdir(tmp_path / name / "checkpoints")
    want = reference_params
    for name in runs:
        resumed = _run_main(tmp_path / name)
        output = resumed.communicate(timeout=300)[0]
        assert resumed.returncode == 0 and "resumed from step" in output, output[-3000:]
        got = dict(_flatten(_final_params(tmp_path / name)))
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{name}: {key}")


def test_checkpoints_by_steps(tmp_path):
    summary = train_and_evaluate(
        _config(num_epochs=2, **{"checkpoint.every_steps": 10, "checkpoint.keep": 10}), str(tmp_path)
    )
    assert summary["finished"]
    assert sorted(map(int, os.listdir(tmp_path / "checkpoints"))) == [10, 20, 22, 30, 40, 44]


def _flatten(tree, prefix=()):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _flatten(value, prefix + (key,))
    else:
        yield prefix, np.asarray(tree)


def test_eight_devices_match_one_device(tmp_path):
    """Data parallelism over 8 (CPU) devices gives the same training curve as 1 device."""
    curves = {}
    for devices in (1, 8):
        env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices))
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "convnext_jax.main",
                "--config",
                "configs/embedded_digits.py",
                "--workdir",
                str(tmp_path / str(devices)),
                "--config.num_epochs=1",
                *TINY,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        curves[devices] = [r["train_loss"] for r in read_metrics(str(tmp_path / str(devices))) if "train_loss" in r]
    assert len(curves[1]) == len(curves[8]) >= 4
    np.testing.assert_allclose(curves[8], curves[1], rtol=1e-5)


def _edit_run_config(workdir, config):
    """What a user who edits WORKDIR/config.json does: the run continues with another config."""
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path):
    train_and_evaluate(_config(num_epochs=1), str(tmp_path))
    config = _config(num_epochs=2, **{"optim.lr": 1e30, "optim.warmup_epochs": 0})
    from convnext_jax.train import NonFiniteLossError

    _edit_run_config(tmp_path, config)
    with pytest.raises(NonFiniteLossError, match="non-finite loss/gradient at step"):
        train_and_evaluate(config, str(tmp_path))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["22"]  # the good checkpoint, nothing newer
    restored = _final_params(tmp_path, step=22)
    assert all(np.isfinite(v).all() for _, v in _flatten(restored))


def test_resume_with_a_different_optimizer_is_a_clear_error(tmp_path):
    train_and_evaluate(_config(num_epochs=1), str(tmp_path))
    changed = _config(num_epochs=2, **{"optim.clip_grad_norm": 0.0})
    with pytest.raises(ValueError, match="another config; changed: num_epochs: 1 -> 2; optim.clip_grad_norm: 1.0 -> 0"):
        train_and_evaluate(changed, str(tmp_path))  # refused before anything is built
    _edit_run_config(tmp_path, changed)  # a checkpoint whose state does not fit the config
    with pytest.raises(ValueError, match="different model, optimizer or precision configuration"):
        train_and_evaluate(changed, str(tmp_path))


def test_finetune_initialises_from_pytorch_weights(tmp_path):
    import torch
    from timm.models.convnext import ConvNeXt as TimmConvNeXt

    reference = TimmConvNeXt(
        depths=(1, 1, 2, 1), dims=(16, 24, 32, 48), use_grn=True, ls_init_value=None, num_classes=1000
    )
    torch.save({"model": reference.state_dict()}, tmp_path / "pretrained.pth")
    config = _config(
        num_epochs=1,
        **{
            "model.init_from": str(tmp_path / "pretrained.pth"),
            "model.reset_head": True,
            "optim.lr": 0.0,
            "optim.min_lr": 0.0,
        },
    )
    train_and_evaluate(config, str(tmp_path / "run"))
    params = {"/".join(k for k in key if k != "value"): v for key, v in _flatten(_final_params(tmp_path / "run", 22))}
    np.testing.assert_allclose(
        params["stem_conv/kernel"], reference.state_dict()["stem.0.weight"].numpy().transpose(2, 3, 1, 0), atol=1e-7
    )
    assert params["head_fc/kernel"].shape == (48, 10)  # fresh 10-class head
    bad = _config(num_epochs=1, **{"model.init_from": str(tmp_path / "pretrained.pth")})
    with pytest.raises(ValueError, match="reset_head"):
        train_and_evaluate(bad, str(tmp_path / "bad"))


def test_ema_is_tracked_and_evaluated(tmp_path):
    summary = train_and_evaluate(_config(num_epochs=1, ema_decay=0.9), str(tmp_path))
    assert 0.0 <= summary["final_val_top1_ema"] <= 1.0 and "final_val_loss_ema" in summary
    assert summary["final_val_loss_ema"] != summary["final_val_loss"]
    state = ocp.StandardCheckpointer().restore(os.path.join(tmp_path, "checkpoints", "22", "state"))
    ema, params = dict(_flatten(state["ema"])), dict(_flatten(state["params"]))
    assert ema.keys() == params.keys()
    assert any(not np.allclose(ema[k], params[k]) for k in ema)


def test_select_on_picks_the_best_checkpoint_by_the_better_weights(tmp_path):
    """select_on=best: each epoch's val_top1_best is the better of val_top1 and val_top1_ema; the
    kept best checkpoint is the epoch with the highest of it; summary.json reports all three."""
    config = _config(num_epochs=3, ema_decay=0.6, select_on="best", **{"checkpoint.keep": 1})
    summary = train_and_evaluate(config, str(tmp_path))
    evals = [r for r in read_metrics(str(tmp_path)) if "val_top1" in r]
    assert len(evals) == 3
    for r in evals:
        assert r["val_top1_best"] == max(r["val_top1"], r["val_top1_ema"])
    assert summary["selected_on"] == "val_top1_best"
    for name in ("val_top1", "val_top1_ema", "val_top1_best"):
        assert summary[f"best_{name}"] == max(r[name] for r in evals)
    best_steps = {r["step"] for r in evals if r["val_top1_best"] == summary["best_val_top1_best"]}
    steps = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())
    assert best_steps & set(steps) and steps[-1] == evals[-1]["step"]  # keep 1 + the best
    with pytest.raises(ConfigError, match="set ema_decay > 0"):
        train_and_evaluate(_config(select_on="val_top1_ema"), str(tmp_path / "no_ema"))


def test_bce_loss_and_repeated_augmentation_end_to_end(tmp_path):
    """loss=bce (per-class sigmoid losses start near log 2, not log 10 as softmax CE) with
    aug_repeats=3 trains: the loss falls and the epoch keeps its number of steps."""
    config = _config(num_epochs=2, loss="bce", bce_target_thresh=0.2, **{"data.aug_repeats": 3})
    summary = train_and_evaluate(config, str(tmp_path))
    losses = [r["train_loss"] for r in read_metrics(str(tmp_path)) if "train_loss" in r]
    assert losses[0] < 0.8 and losses[-1] < 0.75 * losses[0]
    assert summary["steps"] == 2 * (1437 // 64)


def test_gradient_accumulation_and_float16_end_to_end(tmp_path):
    summary = train_and_evaluate(
        _config(num_epochs=1, ema_decay=0.5, **{"optim.grad_accum_steps": 2, "model.dtype": "float16"}), str(tmp_path)
    )
    assert summary["steps"] == 22 and summary["grad_accum_steps"] == 2  # optimizer steps of 2 micro-batches
    scales = [r["loss_scale"] for r in read_metrics(str(tmp_path)) if "loss_scale" in r]
    assert scales and all(1.0 <= s <= 2.0**16 for s in scales)
    assert 0 <= summary["skipped_steps"] < 22  # the first steps may overflow at 2**16 and are skipped
    assert summary["final_val_count"] == 360 and summary["best_val_top1"] > 0.3
