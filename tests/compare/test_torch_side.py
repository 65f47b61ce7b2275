"""The PyTorch side of a comparison resumes exactly: killed after its first epoch, run again, it
ends where an uninterrupted run ends (shared batches, with mixup, random erasing and drop path)."""

import json
import os
import signal
import subprocess
import sys
import time

from configs import embedded_digits
from convnext_jax.sweep.space import apply_params
from convnext_jax.train.workdir import RunDir

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _start(workdir):
    config = apply_params(
        embedded_digits.get_config(),
        {
            "model.dims": (16, 24, 32, 48),
            "model.depths": (1, 1, 1, 1),
            "model.drop_path_rate": 0.1,
            "data.augment.mixup_alpha": 0.8,
            "data.augment.re_prob": 0.25,
            "num_epochs": 2,
        },
    )
    if not RunDir(str(workdir)).exists:
        RunDir(str(workdir)).write_config(config)
    return subprocess.Popen(
        [sys.executable, "-m", "convnext_jax.compare.torch_side", "--workdir", str(workdir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )


def _losses(workdir):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["train_loss"] for line in lines]


def test_killed_after_an_epoch_it_resumes_exactly(tmp_path):
    whole = _start(tmp_path / "whole")
    out = whole.communicate(timeout=300)[0]
    assert whole.returncode == 0, out[-2000:]
    killed = _start(tmp_path / "killed")
    deadline = time.monotonic() + 300
    while not (tmp_path / "killed" / "resume.pt").exists():
        assert time.monotonic() < deadline and killed.poll() is None, killed.stdout.read()[-2000:]
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed" / "summary.json").exists()
    again = _start(tmp_path / "killed")
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 0 and "resumed from step 22/44" in out, out[-2000:]
    assert not (tmp_path / "killed" / "resume.pt").exists()  # finished: nothing left to resume
    assert _losses(tmp_path / "killed") == _losses(tmp_path / "whole")
    ours, theirs = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("killed", "whole"))
    assert ours["final_val_loss"] == theirs["final_val_loss"] and ours["best_val_top1"] == theirs["best_val_top1"]
