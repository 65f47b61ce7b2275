"""metrics.jsonl (one JSON object per line, appended, survives restarts), TensorBoard event
files (tensorboardX, no TensorFlow) and JSON records (summary.json, eval_STEP.json)."""

from __future__ import annotations

import json
import os
from typing import Any

from convnext_jax.run_files import METRICS_FILE


class MetricsWriter:
    """Append-only JSON-lines writer (on resume, lines past the restored step are dropped) that
    also writes every numeric value as a TensorBoard scalar under `workdir/tensorboard`."""

    def __init__(self, workdir: str, *, resume_step: int = 0, enabled: bool = True):
        from tensorboardX import SummaryWriter

        self.enabled = enabled  # multi-host: only process 0 writes
        if not enabled:
            return

        self.tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=resume_step or None)
        self.path = os.path.join(workdir, METRICS_FILE)
        if os.path.exists(self.path):
            with open(self.path) as f:
                kept = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            with open(self.path, "w") as f:
                f.writelines(kept)

    def write(self, step: int, **values: Any) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{k: _plain(v) for k, v in values.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if key != "step" and isinstance(value, float):
                self.tensorboard.add_scalar(key, value, step)
        self.tensorboard.flush()

    def image(self, step: int, tag: str, pixels: Any) -> None:
        """A uint8 H x W x 3 image in TensorBoard."""
        if self.enabled:
            self.tensorboard.add_image(tag, pixels, step, dataformats="HWC")
            self.tensorboard.flush()

    def close(self) -> None:
        if self.enabled:
            self.tensorboard.close()


def _plain(value: Any) -> Any:
    if value is None:
        return None
    try:
        return float(value) if not isinstance(value, (str, bool, int)) else value
    except (TypeError, ValueError):
        return str(value)


def read_metrics(workdir: str) -> list[dict[str, Any]]:
    with open(os.path.join(workdir, METRICS_FILE)) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_json(path: str, record: dict[str, Any]) -> None:
    """A flat record (summary.json, eval_STEP.json) as indented JSON, numbers as plain floats."""
    with open(path, "w") as f:
        json.dump({k: _plain(v) if not isinstance(v, (dict, list)) else v for k, v in record.items()}, f, indent=2)
