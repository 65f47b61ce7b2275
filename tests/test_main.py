"""The main command line, run the way a user runs it (a subprocess): the journeys of the first hour
work without guessing, and no mistake shows a traceback or leaves anything behind."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.join(os.path.dirname(__file__), "..")
TINY = [
    "--config.model.depths=(1, 1, 1, 1)",
    "--config.model.dims=(16, 24, 32, 48)",
    "--config.log_every=100",
    "--config.num_epochs=1",
]


WITHOUT_TORCH = """import sys
class NoTorch:  # any import of torch fails, as on a machine without it
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "timm"):
            raise ImportError(f"{name} is not installed (blocked by the test)")
sys.meta_path.insert(0, NoTorch())
from convnext_jax.main import run
run()
"""


def _start(*args, without_torch=False):
    command = ["-c", WITHOUT_TORCH] if without_torch else ["-m", "convnext_jax.main"]
    return subprocess.Popen(
        [sys.executable, *command, *map(str, args)],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )


def _main(*args, timeout=300, without_torch=False):
    proc = _start(*args, without_torch=without_torch)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_user_mistakes_are_one_short_message_and_leave_nothing_behind(tmp_path):
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    cases = {
        "--config.optim.lrr=1": "unknown config key 'optim.lrr' (did you mean 'optim.lr'?)",
        "--config.batch_size=0": "batch_size must be >= 1; got 0",
        "--config.model.dtype=fp8": "model.dtype must be one of float32, bfloat16, float16; got 'fp8'",
        "--config.optim.schedule=cosin": "(did you mean 'cosine'?)",
        "--config.data.source=folder:/no/such/dir": "the folder /no/such/dir does not exist",
        f"--config.model.init_from={tmp_path / 'notes.txt'}": "is not a PyTorch checkpoint",
        "--config.batch_size=abc": "batch_size must be an integer, got 'abc'",
        "--config.optim.lr=fast": "optim.lr must be a number, got 'fast'",
        "--config.batch_size=4096": "larger than the training set (1437 images)",
        "--config.model.name=convnext_tiy": "did you mean 'convnext_tiny'",
    }
    procs = {
        arg: _start("--config", "configs/embedded_digits.py", "--workdir", tmp_path / f"w{i}", arg)
        for i, arg in enumerate(cases)
    }
    for i, (arg, proc) in enumerate(procs.items()):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, (arg, out, err)
        assert err.startswith("error: ") and cases[arg] in err and "Traceback" not in err, (arg, err)
        assert len(err.splitlines()) <= 6, err
        assert not (tmp_path / f"w{i}").exists(), arg  # no config.json, no empty checkpoints/
    code, _, err = _main("--config", "configs/nope.py", "--workdir", tmp_path / "x")
    assert code == 2 and "config file configs/nope.py not found" in err
    code, _, err = _main("--workdir", tmp_path / "x")
    assert code == 2 and "--config is needed" in err


def test_a_run_is_never_overwritten_and_eval_uses_its_config(tmp_path):
    run = tmp_path / "run"
    base = ["--config", "configs/embedded_digits.py", "--workdir", run, *TINY]
    code, out, err = _main(*base, "--config.data.image_size=40", without_torch=True)  # the main job needs no torch
    assert code == 0, err[-3000:]
    assert "data: embedded:digits: 1437 train / 360 val images, 10 classes; 22 steps of 64 per epoch, 1 epoch\n" in out
    assert "waiting for data" not in out  # 8x8 digits in memory: the CPU's step, not the pipeline, sets the pace
    assert "29 of 1437 training images are left out of each epoch" in out
    summary_text, config_text = (run / "summary.json").read_text(), (run / "config.json").read_text()
    summary = json.loads(summary_text)

    code, out, err = _main(*base, "--config.data.image_size=40")  # the same command again
    assert code == 0 and "this run is finished" in out and "--extend" in out
    assert (run / "summary.json").read_text() == summary_text  # nothing retrained or overwritten

    code, out, err = _main(*base)  # image_size forgotten: another run
    assert code == 2 and "changed: data.image_size: 40 -> 32" in err and "Traceback" not in err
    assert (run / "config.json").read_text() == config_text

    code, out, err = _main("--mode", "eval", "--workdir", run)  # the run's own config, nothing repeated
    assert code == 0, err[-3000:]
    result = json.loads(out[out.index("{") :])
    assert result["val_top1"] == pytest.approx(summary["final_val_top1"]) and result["val_count"] == 360
    assert (run / "eval_22.json").exists()

    code, out, err = _main("--mode", "eval", "--workdir", run, "--config", "configs/embedded_digits.py:v1")
    assert code == 2 and "another model" in err and "model.name: 'convnextv2_atto' -> 'convnext_atto'" in err

    code, out, err = _main(*base, "--config.data.image_size=40", "--config.num_epochs=2", "--extend")
    assert code == 0 and "resumed from step 22/44" in out, err[-3000:]
    extended = json.loads((run / "summary.json").read_text())
    assert extended["steps"] == 44 and extended["best_val_top1"] >= summary["best_val_top1"]

    code, out, _ = _main("--workdir", run, "--show_config")
    assert code == 0 and "data.image_size = 40  (default 224)" in out and "num_epochs = 2" in out


def _image_folder(root, classes=3, per_class=(14, 4)):
    rng = np.random.default_rng(0)
    for split, count in zip(("train", "val"), per_class):
        for c in range(classes):
            os.makedirs(root / split / f"class_{c}")
            for i in range(count):
                colour = np.zeros((40, 48, 3), np.uint8)
                colour[..., c] = 200  # each class its own colour: learnable in an epoch or two
                noise = rng.integers(0, 40, colour.shape, dtype=np.uint8)
                Image.fromarray(colour + noise).save(root / split / f"class_{c}" / f"{i}.jpg")


def test_own_folder_and_fine_tuning_from_a_timm_checkpoint(tmp_path):
    import timm
    import torch

    _image_folder(tmp_path / "data")
    (tmp_path / "data" / "train" / "class_1" / "broken.jpg").write_bytes(b"not a jpeg")  # skipped, counted, warned once
    (tmp_path / "data" / "val" / "class_0" / "empty.jpg").write_bytes(b"")  # left out of the metrics, never replaced
    tiny = ["--config.batch_size=16", "--config.data.workers=2", "--config.num_epochs=2", *TINY[:2]]
    code, out, err = _main(
        "--config", f"configs/folder.py:path={tmp_path / 'data'},size=32", "--workdir", tmp_path / "mine", *tiny
    )
    assert code == 0, err[-3000:]
    assert f"data: folder:{tmp_path / 'data'}: 43 train / 13 val images, 3 classes; 2 steps of 16 per epoch" in out
    assert "11 of 43 training images are left out of each epoch" in out
    assert json.loads((tmp_path / "mine" / "class_names.json").read_text()) == ["class_0", "class_1", "class_2"]
    summary = json.loads((tmp_path / "mine" / "summary.json").read_text())
    # seed 0 draws the broken file (2 epochs x 32 of 43 images, the order is deterministic): one warning only
    assert summary["skipped_images"] == 1 and out.count("skipping unreadable image") == 1
    assert "val_top5" not in out and "final_val_top5" not in summary  # 3 classes: top-5 is always 1
    assert 0.0 <= summary["data_wait_fraction"] <= 1.0
    # the zero-byte val image: left out (not replaced by the next image, of another class), named once, counted
    assert summary["final_val_count"] == 12 and summary["skipped_val_images"] == 1
    assert out.count("empty.jpg is left out of the metrics") == 1
    with open(tmp_path / "mine" / "per_class.csv") as f:
        per_class = list(csv.DictReader(f))
    assert [int(r["images"]) for r in per_class] == [4, 4, 4]
    validate = subprocess.run(
        [sys.executable, "-m", "convnext_jax.validate", tmp_path / "mine"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert validate.returncode == 0, validate.stderr[-3000:]
    assert "(12 images, 1 unreadable left out" in validate.stderr and "empty.jpg" in validate.stderr
    code, out, err = _main("--mode", "eval", "--workdir", tmp_path / "mine")
    result = json.loads(out[out.index("{") :])
    assert code == 0 and result["val_count"] == 12 and result["skipped_val_images"] == 1 and "empty.jpg" in err
    metrics = [json.loads(line) for line in (tmp_path / "mine" / "metrics.jsonl").read_text().splitlines()]
    assert all(0.0 <= r["data_wait_fraction"] <= 1.0 for r in metrics if "img_per_s" in r)

    torch.save({"model": timm.create_model("convnext_atto", num_classes=1000).state_dict()}, tmp_path / "atto.pth")
    code, out, err = _main(
        "--config",
        f"configs/finetune.py:{tmp_path / 'atto.pth'}",
        "--workdir",
        tmp_path / "ft",
        f"--config.data.source=folder:{tmp_path / 'data'}",
        "--config.data.image_size=32",
        "--config.batch_size=16",
        "--config.num_epochs=1",
        "--config.data.augment.auto_augment=",
    )
    assert code == 0, err[-3000:]
    assert "model: convnext_atto from " in out and "(2, 2, 6, 2) x (40, 80, 160, 320)" in out  # inferred
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["model"]["name"] == "convnext_atto"
    assert json.loads((tmp_path / "ft" / "summary.json").read_text())["model"] == "convnext_atto"
    assert "initialised from" in out and "with a fresh classifier" in out


def test_fcmae_pretraining_then_fine_tuning(tmp_path):
    pre = [
        "--config",
        "configs/fcmae_pretrain.py:tiny",
        "--workdir",
        tmp_path / "pre",
        "--config.fcmae.pictures=2",
        *TINY[:2],
    ]
    code, out, err = _main(*pre, "--config.num_epochs=1")
    assert code == 0, err[-3000:]
    assert "warning: the LR warmup (1 epoch) of 22 steps is as long as the whole run (1 epoch, 22 steps)" in out
    assert "model: FCMAE pre-training of convnextv2_atto (custom depths/dims) (1, 1, 1, 1)" in out  # not the real atto
    assert "epoch 1/1: val_loss" in out
    summary = json.loads((tmp_path / "pre" / "summary.json").read_text())
    assert summary["best_val_loss"] == summary["final_val_loss"] > 0 and summary["final_val_count"] == 360
    assert (tmp_path / "pre" / "pictures" / "epoch_0001.png").exists()
    events = "".join(f.read_bytes().decode("latin-1") for f in (tmp_path / "pre" / "tensorboard").iterdir())
    assert "reconstruction" in events and "val_loss" in events
    code, out, err = _main(*pre, "--config.num_epochs=2", "--extend")  # resumes the pre-training exactly
    assert code == 0 and "resumed from step 22/44" in out, err[-3000:]

    code, out, err = _main(
        "--config",
        f"configs/finetune.py:{tmp_path / 'pre'},tiny",
        "--workdir",
        tmp_path / "ft",
        "--config.num_epochs=1",
    )  # the README's demo, one epoch
    assert code == 0, err[-3000:]
    assert "initialised from" in out and "with a fresh classifier" in out and "(1, 1, 1, 1) x (16, 24, 32, 48)" in out
    assert "warning" not in out  # the demo's recipe fits its length (no EMA, no warmup)
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["optim"]["layer_decay"] == 0.9 and config["model"]["head_init_scale"] == 1e-6  # official fine-tuning
    assert config["data"]["source"] == "embedded:digits" and config["data"]["image_size"] == 64
    summary = json.loads((tmp_path / "ft" / "summary.json").read_text())
    assert summary["final_val_top1"] > 0.3 and "ema_meaningful" not in summary

    code, _, err = _main(
        "--config", "configs/fcmae_pretrain.py:tiny", "--workdir", tmp_path / "bad", "--config.data.image_size=48"
    )
    assert (
        code == 2
        and "image size must be a multiple of it; got 48x48 (e.g. data.image_size=32) (fcmae.patch_size)" in err
    )


def _run_until(args, line_start, sig, *, group=True, twice=False):
    """Start main, send `sig` (to its process group, as a terminal's Ctrl-C does) once a stdout line
    starts with `line_start`; returns (exit code, stdout, stderr)."""
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "convnext_jax.main", *map(str, args)],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(line_start):
            kill = (lambda s: os.killpg(proc.pid, s)) if group else (lambda s: proc.send_signal(s))
            kill(sig)
            if twice:
                time.sleep(0.05)
                kill(sig)
            break
    out, err = proc.communicate(timeout=300)
    return proc.returncode, "".join(seen) + out, err


def test_ctrl_c_saves_at_the_current_step_like_sigterm(tmp_path):
    import re
    import signal

    _image_folder(tmp_path / "data")
    args = [
        "--config",
        f"configs/folder.py:path={tmp_path / 'data'},size=32",
        "--workdir",
        tmp_path / "run",
        *TINY[:2],
        "--config.log_every=1",
        "--config.num_epochs=40",
        "--config.batch_size=8",
        "--config.data.workers=2",
    ]
    # Ctrl-C twice, to the whole process group (the worker processes too), in the middle of epoch 2
    code, out, err = _run_until(args, "step 7/", signal.SIGINT, twice=True)
    assert code == 130, (out[-2000:], err[-3000:])
    saved = re.search(r"interrupted \(Ctrl-C\): saved a checkpoint at step (\d+); run the same command again", out)
    assert saved, out[-2000:]
    step = int(saved.group(1))
    assert step >= 7 and step % 5 and (tmp_path / "run" / "checkpoints" / str(step)).is_dir()  # not an epoch end
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert "did not provide metrics" not in err
    assert "SIGINT again: still saving the checkpoint; waiting for the save to finish" in err
    # the same command resumes at that step; SIGTERM there takes the same path with exit code 75
    code, out, err = _run_until(args, f"step {step + 2}/", signal.SIGTERM, group=False)
    assert f"resumed from step {step}/200" in out and code == 75, (out[-2000:], err[-3000:])
    assert "preempted (SIGTERM): saved a checkpoint" in out and "Traceback" not in err


def _folder(root, layout, junk=()):
    """Image folders from {"split/class": count}; `junk` paths get bytes that are no image."""
    for folder, count in layout.items():
        os.makedirs(root / folder, exist_ok=True)
        for i in range(count):
            Image.fromarray(np.full((40, 40, 3), 50 * i % 255, np.uint8)).save(root / folder / f"{i}.jpg")
    for path in junk:
        (root / path).write_bytes(b"not an image")


def test_every_data_mistake_is_one_short_error(tmp_path):
    two = {"train/a": 8, "train/b": 8}
    cases = {
        "classes differ": ({**two, "val/a": 2, "val/c": 2}, "val has classes that the training split does not: ['c']"),
        "empty val": ({**two, "val/a": 0}, "val contains no image files"),
        "no class folders": ({**two, "val": 0}, "val has no class subfolders"),
        "bad image, on_bad_image=error": ({**two, "val/a": 2, "val/b": 2}, "train/a/junk.jpg: not an image file"),
    }
    procs = {}
    for i, (name, (layout, _)) in enumerate(cases.items()):
        _folder(tmp_path / f"d{i}", layout, junk=["train/a/junk.jpg"] if "bad image" in name else [])
        procs[name] = _start(
            "--config",
            f"configs/folder.py:path={tmp_path / f'd{i}'},size=32",
            "--workdir",
            tmp_path / f"w{i}",
            *TINY,
            "--config.batch_size=4",
            "--config.data.on_bad_image=error",
        )
    procs["tfds not prepared"] = _start(
        "--config",
        "configs/embedded_digits.py",
        "--workdir",
        tmp_path / "wt",
        "--config.data.source=tfds:mnist",
        f"--config.data.data_dir={tmp_path}",
    )
    expected = {**{name: text for name, (_, text) in cases.items()}, "tfds not prepared": "tfds build mnist"}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        errors = [line for line in err.splitlines() if not line.startswith("warning: ")]
        assert proc.returncode == 2 and len(errors) == 1 and errors[0].startswith("error: "), (name, err)
        assert expected[name] in errors[0] and "Traceback" not in err, (name, err)
    assert not any((tmp_path / f"w{i}").exists() for i in range(3))  # found before the run starts: nothing written
