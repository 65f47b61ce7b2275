"""The sweep command line, the way a user runs it: an LR study with two workers and its report,
every line labelled with its trial; mistakes are one short message before anything starts."""

import json
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def _sweep(*args, timeout=600):
    result = subprocess.run(
        [sys.executable, "-m", "convnext_jax.sweep", *map(str, args)],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=timeout,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    return result.returncode, result.stdout, result.stderr


def test_lr_study_with_two_workers_and_its_report(tmp_path):
    code, out, err = _sweep(
        "run",
        "--config",
        "configs/sweeps/lr.py:tiny",
        "--workdir",
        tmp_path,
        "--workers",
        2,
        "--config.num_epochs=1",
        "--config.sweep.space=optim.lr: grid(1e-3, 1e-2)",
        "--config.sweep.pruner=none",
    )
    assert code == 0, (out + err)[-3000:]
    lines = [line for line in out.splitlines() if line.strip()]
    trial_lines = [line for line in lines if "step " in line or "epoch " in line or "started:" in line]
    assert trial_lines and all(line.startswith("[w") and " trial " in line for line in trial_lines)
    assert sum("complete best_val_top1=" in line for line in lines) == 4  # 2 LRs x 2 seeds
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<table>" in page and "**" not in page and "(2 seeds)" in page and "<img src='curves.png'" in page
    points = json.loads((tmp_path / "report" / "points.json").read_text())
    assert points["headline"].startswith("Best point: optim.lr=") and len(points["points"]) == 2
    assert out.count(points["headline"]) == 1 and out.rstrip().endswith(f"report: {tmp_path}/report/report.md")
    assert "(custom depths/dims): the names below are not the published architectures" in page  # shrunken attos
    assert all(p["complete"] == 2 for p in points["points"])
    assert (tmp_path / "trials" / "0000" / "curves.png").exists()


def test_study_mistakes_are_short_and_create_nothing(tmp_path):
    cases = {
        "--config.sweep.space=optim.lrr: grid(1e-3)": "did you mean 'lr'",
        "--config.sweep.sampler=tpee": "sweep.sampler must be one of grid, random, tpe; got 'tpee'",
        "--config.optim.lrr=1": "unknown config key 'optim.lrr' (did you mean 'optim.lr'?)",
        "--config.batch_size=0": "batch_size must be >= 1",
        "--config.data.source=folder:/no/such": "/no/such does not exist",
    }
    for i, (arg, message) in enumerate(cases.items()):
        code, out, err = _sweep("run", "--config", "configs/sweeps/lr.py:tiny", "--workdir", tmp_path / str(i), arg)
        assert code == 2 and err.startswith("error: ") and message in err and "Traceback" not in err, (arg, err)
        assert not (tmp_path / str(i)).exists()
    code, out, err = _sweep("report", "--workdir", tmp_path / "none")
    assert code == 2 and "sweep.json not found" in err
    code, out, _ = _sweep("run", "--config", "configs/sweeps/batch.py:tiny", "--show_config")
    assert code == 0 and "sweep.objective = 'final_val_loss'" in out and "sweep.seeds = 2" in out
