"""The engine's parts: the step is compiled once (another shape is an error, never a silent
recompilation), the log window times only what it should and finds the first non-finite step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.common import tiny_study_base
from convnext_jax.sweep.space import apply_params
from convnext_jax.train import setup as setup_lib
from convnext_jax.train.engine import Engine, LogWindow, NonFiniteLossError, micro_batches


def _setup():
    return setup_lib.build(apply_params(tiny_study_base(), {"num_epochs": 1}))


def test_the_step_is_compiled_once_for_its_shapes(tmp_path):
    s = _setup()
    engine = Engine(s, str(tmp_path), checkpointer=None, writer=None, progress=None)
    batch = next(iter(s.train_loader))
    sharding = s.layout.sharding(s.layout.micro_batch_spec)
    device_batch = {k: jax.device_put(v, sharding) for k, v in micro_batches(batch, 1).items()}
    step, compile_s = engine._compile(s.state, device_batch, jax.random.key(0))
    assert compile_s > 0
    state, metrics = step(s.state, device_batch, jax.random.key(0))
    assert int(state.step) == 1 and bool(metrics["finite"])
    smaller = {k: v[:, :32] for k, v in micro_batches(batch, 1).items()}
    with pytest.raises(TypeError):  # not recompiled for another batch shape
        step(state, smaller, jax.random.key(1))


def test_micro_batches_keep_examples_in_order():
    batch = {"image": np.arange(12).reshape(6, 2), "label": np.arange(6)}
    out = micro_batches(batch, 3)
    assert out["image"].shape == (3, 2, 2) and out["label"].tolist() == [[0, 1], [2, 3], [4, 5]]


def test_log_window_finds_the_first_non_finite_step(tmp_path):
    s = _setup()
    window = LogWindow(s, str(tmp_path))
    window.record(1, jnp.array(True), timed=False)
    values = window.close(1, {"loss": 2.0, "accuracy": 0.5, "grad_norm": 1.0, "finite": True})
    assert values == {"train_loss": 2.0, "train_accuracy": 0.5, "grad_norm": 1.0}  # untimed: no img/s yet
    window.start()
    for step, ok in ((2, True), (3, False), (4, False)):
        window.record(step, jnp.array(ok))
    with pytest.raises(NonFiniteLossError, match=f"non-finite loss/gradient at step 3 .* in {tmp_path} is intact"):
        window.close(4, {"loss": float("nan"), "accuracy": 0.0, "grad_norm": float("nan"), "finite": False})
    window.start()
    window.record(5, jnp.array(True))
    values = window.close(5, {"loss": 1.0, "accuracy": 0.5, "grad_norm": 1.0, "finite": True})
    assert values["img_per_s"] > 0 and values["step_time_s"] > 0
