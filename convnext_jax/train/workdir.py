"""A run's directory: the config it was trained with, whether it finished, and the rules for
coming back to it (resume with the same config, evaluate with its config, extend explicitly).

    WORKDIR/config.json        the training config (written once, when the run starts)
    WORKDIR/class_names.json   the label of every class index (image folders)
    WORKDIR/summary.json       written when the run finishes ("finished": true)
    WORKDIR/curves.png         validation metric per epoch and train loss per step, when it finishes
    WORKDIR/metrics.jsonl, tensorboard/, checkpoints/<step>/
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import ml_collections

from convnext_jax import schema
from convnext_jax.errors import ConfigError
from convnext_jax.run_files import CLASSES_FILE, CONFIG_FILE, CURVES_FILE, METRICS_FILE, SUMMARY_FILE  # noqa: F401
from convnext_jax.train import config as train_config
from convnext_jax.train.checkpoint import checkpoint_steps


def config_from_json(text: str, where: str) -> ml_collections.ConfigDict:
    """A training config stored as JSON, on top of the defaults (keys it lacks keep theirs)."""
    try:
        stored = schema.json_tuples(json.loads(text))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where} is not valid JSON ({e})") from e
    problems = schema.check(train_config.SCHEMA, stored)
    if problems:
        raise ConfigError(f"{where} does not fit this version's config keys:\n  " + "\n  ".join(problems))
    config = train_config.base_config()
    config.update(stored)
    config.lock()
    return config


def differing(old: ml_collections.ConfigDict, new: ml_collections.ConfigDict, keys: list[str]) -> list[str]:
    """'key: old -> new' for each of `keys` whose value differs."""
    a, b = schema.flatten(old), schema.flatten(new)
    return [f"{key}: {a.get(key)!r} -> {b.get(key)!r}" for key in keys if a.get(key) != b.get(key)]


class RunDir:
    """What is on disk for one run."""

    def __init__(self, path: str):
        self.path = os.path.abspath(os.path.expanduser(path))

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def exists(self) -> bool:
        return os.path.isfile(self.file(CONFIG_FILE))

    def stored_config(self) -> ml_collections.ConfigDict:
        if not self.exists:
            raise ConfigError(f"{self.path} has no {CONFIG_FILE}: it is not a training workdir (train into it first)")
        with open(self.file(CONFIG_FILE)) as f:
            return config_from_json(f.read(), self.file(CONFIG_FILE))

    def write_config(self, config: ml_collections.ConfigDict) -> None:
        os.makedirs(self.path, exist_ok=True)
        with open(self.file(CONFIG_FILE), "w") as f:
            f.write(config.to_json_best_effort(indent=2) + "\n")

    def write_class_names(self, names: list[str]) -> None:
        with open(self.file(CLASSES_FILE), "w") as f:
            json.dump(names, f, indent=1)

    def class_names(self) -> list[str] | None:
        """The class names the run was trained with (image folders), or None."""
        if not os.path.isfile(self.file(CLASSES_FILE)):
            return None
        with open(self.file(CLASSES_FILE)) as f:
            return json.load(f)

    def summary(self) -> dict[str, Any] | None:
        if not os.path.isfile(self.file(SUMMARY_FILE)):
            return None
        with open(self.file(SUMMARY_FILE)) as f:
            return json.load(f)

    def latest_step(self) -> int | None:
        steps = checkpoint_steps(self.path)
        return steps[-1] if steps else None

    def finished_summary(self, config: ml_collections.ConfigDict) -> dict[str, Any] | None:
        """The summary of a run that finished with this many epochs (its last checkpoint is its last step)."""
        summary = self.summary()
        if (
            summary
            and summary.get("finished")
            and summary.get("epochs") == config.num_epochs
            and self.latest_step() == summary.get("steps")
        ):
            return summary
        return None

    def check_resumable(self, config: ml_collections.ConfigDict, *, extend: bool = False) -> None:
        """A config that comes back to this run must compute the same run: the same values for
        every key that defines it (`run=True` keys; num_epochs may grow with `extend`)."""
        stored = self.stored_config()
        keys = [k for k in train_config.run_keys() if not (extend and k == "num_epochs")]
        if not config.model.name and config.model.init_from == stored.model.init_from:
            keys.remove("model.name")  # the stored name was resolved from the weights' architecture
        changed = differing(stored, config, keys)
        if changed:
            raise ConfigError(
                f"{self.path} holds a run with another config; changed: " + "; ".join(changed) + ". Use a new "
                "--workdir for a new run, or the run's own config (omit --config to take its config.json)."
                + (
                    " To train it longer: --config.num_epochs=N --extend."
                    if any(c.startswith("num_epochs:") for c in changed)
                    else ""
                )
            )
        if extend:
            trained = self.summary() or {}
            if config.num_epochs < stored.num_epochs or config.num_epochs < trained.get("epochs", 0):
                raise ConfigError(
                    f"--extend trains longer: num_epochs {config.num_epochs} is below the run's {stored.num_epochs}"
                )

    def remove_new_files(self, before: set[str] | None) -> None:
        """Undo a start that failed: remove what this attempt created (the whole directory if it
        did not exist before)."""
        if before is None:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for name in set(os.listdir(self.path)) - before if os.path.isdir(self.path) else ():
            target = os.path.join(self.path, name)
            shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)

    def listing(self) -> set[str] | None:
        return set(os.listdir(self.path)) if os.path.isdir(self.path) else None
