"""The 2-D mesh and FSDP: mesh sizes and their errors, which dimension each array is split
along, the FSDP step == data parallelism (8 CPU devices), the main job with mesh.fsdp (same
losses, a smaller state per device) resuming on another mesh, and exact restore across meshes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from jax.sharding import AbstractMesh, PartitionSpec

from convnext_jax.errors import ConfigError
from convnext_jax.train.metrics import read_metrics
from convnext_jax.train.parallel import Layout, mesh_shape

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def _layout(data, fsdp, min_shard_size=0):
    return Layout(AbstractMesh((data, fsdp), ("data", "fsdp")), min_shard_size=min_shard_size)


def test_mesh_shape_fills_in_the_rest_and_rejects_bad_sizes():
    assert mesh_shape(-1, 1, 8) == (8, 1) and mesh_shape(-1, 8, 8) == (1, 8) and mesh_shape(4, -1, 8) == (4, 2)
    assert mesh_shape(2, 4, 8) == (2, 4)
    with pytest.raises(ConfigError, match="product must be the device count"):
        mesh_shape(2, 2, 8)
    with pytest.raises(ConfigError, match="mesh.fsdp=3 does not divide the 8 devices"):
        mesh_shape(-1, 3, 8)
    with pytest.raises(ConfigError, match="cannot both be -1"):
        mesh_shape(-1, -1, 8)
    with pytest.raises(ConfigError, match="mesh.data must be a positive number"):
        mesh_shape(0, 8, 8)


def test_each_array_is_split_along_its_largest_divisible_dimension():
    layout = _layout(4, 2, min_shard_size=100)
    assert layout.replicas == 8 and layout.fsdp == 2 and layout.batch_spec == PartitionSpec(("data", "fsdp"))
    assert layout.shard_dim((7, 7, 1, 96)) == 3  # depthwise kernel: channels
    assert layout.shard_dim((96, 384)) == 1 and layout.shard_dim((384, 96)) == 0
    assert layout.shard_dim((3, 96, 96)) == 2  # equal sizes: the last; a stacked (scan) depth of 3 is not split
    assert layout.shard_dim((96,)) is None and layout.shard_dim(()) is None  # under min_shard_size, scalars
    assert _layout(8, 1).shard_dim((96, 384)) is None  # no fsdp: replicated
    state = {"w": np.zeros((64, 32)), "b": np.zeros((5,)), "step": np.zeros(())}
    specs = layout.state_specs(state)
    assert specs == {"w": PartitionSpec("fsdp", None), "b": PartitionSpec(), "step": PartitionSpec()}


def test_an_array_no_dimension_of_which_divides_is_a_clear_error():
    with pytest.raises(
        ConfigError,
        match=r"mesh.fsdp=8 divides no dimension of \['stem'\] \(7, 7, 3, 20\).*"
        r"mesh.fsdp_min_size=2941",
    ):
        _layout(1, 8).state_dims({"stem": np.zeros((7, 7, 3, 20))})


def test_a_bad_mesh_in_the_config_is_a_short_error(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "convnext_jax.main",
            "--config",
            "configs/embedded_digits.py",
            "--workdir",
            str(tmp_path),
            "--config.mesh.fsdp=3",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "mesh.fsdp=3 does not divide the 1 devices" in result.stderr
    assert not (tmp_path / "checkpoints").exists()


_STEP_SCRIPT = r"""
import json, jax, numpy as np
from flax import nnx
import convnext_jax as cj
from tests.train.test_steps import _batch, _optim, _stack
from convnext_jax.train.optim import LearningRate, build_optimizer
from convnext_jax.train.parallel import make_layout, state_bytes_per_device
from convnext_jax.train.state import TrainState
from convnext_jax.train.steps import make_train_step
from convnext_jax.train.tasks import Classification
model = cj.create_model("convnextv2_atto", num_classes=16, rngs=0, depths=(1, 1, 2, 1), dims=(16, 32, 32, 64),
                        dwconv_impl="lax", scan_blocks=True, drop_path_rate=0.1)
graphdef, params, rest = nnx.split(model, nnx.Param, ...)
# clip 0.05: every step is clipped, so the clip must use the norm of the whole gradient
tx = build_optimizer(_optim(name="adamw", clip_grad_norm=0.05, weight_decay=0.05), params, LearningRate(100), peak_lr=1e-2)
out = {}
for data, fsdp in [(8, 1), (4, 2)]:
    layout = make_layout(data, fsdp, min_shard_size=64)
    state = layout.place_state(TrainState.create(jax.tree.map(np.array, params), tx, ema=True))
    step = jax.jit(make_train_step(graphdef, rest, tx, Classification(16, 0.1), ema_decay=0.9, layout=layout),
                   donate_argnums=(0,)).lower(state, _stack(_batch(32), 2), jax.random.key(0)).compile()
    hlo = step.as_text()
    norms = []
    for i in range(3):
        state, metrics = step(state, _stack(_batch(32, seed=i), 2), jax.random.key(i))
        norms.append(float(metrics["grad_norm"]))
    out[f"{data}x{fsdp}"] = {
        "norms": norms, "bytes": state_bytes_per_device(state),
        "params": [np.asarray(x).ravel().tolist() for x in jax.tree.leaves((state.params, state.ema))],
        "kernel_spec": list(state.params["stages"][2]["blocks"]["fc1"]["kernel"].sharding.spec),
        "reduce_scatters": hlo.count("reduce-scatter("), "all_gathers": hlo.count("all-gather(")}
print(json.dumps(out))
"""


def test_fsdp_step_equals_data_parallelism_on_eight_devices():
    """3 AdamW steps with clipping, EMA, 2 micro-batches, drop path: the same params and EMA (to
    float rounding) on 8x1 and 4x2 meshes (1x8: the main-job test below); the state per device
    shrinks; the sharded step gathers params and reduce-scatters gradients."""
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="8", JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    result = subprocess.run(
        [sys.executable, "-c", _STEP_SCRIPT], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    reference = out["8x1"]
    assert reference["reduce_scatters"] == 0 and min(reference["norms"]) > 0.05  # clipped every step
    for mesh in ("4x2",):
        np.testing.assert_allclose(out[mesh]["norms"], reference["norms"], rtol=1e-5)
        for a, b in zip(out[mesh]["params"], reference["params"]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # Adam: ~lr x rounding
        assert out[mesh]["reduce_scatters"] > 0 and out[mesh]["all_gathers"] > 0
        assert "fsdp" in out[mesh]["kernel_spec"]
    assert out["4x2"]["bytes"] < 0.6 * reference["bytes"]


def _main(workdir, *extra, devices=8):
    env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices), JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "convnext_jax.main",
            "--config",
            "configs/embedded_digits.py",
            "--workdir",
            str(workdir),
            "--config.model.dims=(16, 24, 32, 48)",
            "--config.log_every=5",
            "--config.mesh.fsdp_min_size=512",
            "--config.batch_size=128",
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((workdir / "summary.json").read_text())


def _val_losses(workdir):
    return [r["val_loss"] for r in read_metrics(str(workdir)) if "val_loss" in r]


def test_main_job_with_fsdp_matches_data_parallelism_and_resumes_on_another_mesh(tmp_path):
    """8 devices, a constant LR (so a run extended by an epoch equals one trained for both): 2
    epochs of data parallelism vs FSDP over all 8 for the first epoch, resumed from that
    checkpoint on a 4x2 mesh for the second; val losses within 1e-4 relative, state per device
    < 1/5 and < 0.6 of the replicated state."""
    constant = ("--config.optim.schedule=constant", "--config.optim.warmup_epochs=0")
    dp = _main(tmp_path / "dp", "--config.num_epochs=2", *constant)
    fsdp = _main(tmp_path / "fsdp", "--config.num_epochs=1", "--config.mesh.fsdp=8", *constant)
    moved = _main(
        tmp_path / "fsdp",
        "--config.num_epochs=2",
        "--extend",
        "--config.mesh.data=4",
        "--config.mesh.fsdp=2",
        *constant,
    )
    assert dp["mesh"] == {"data": 8, "fsdp": 1} and fsdp["mesh"] == {"data": 1, "fsdp": 8}
    assert moved["mesh"] == {"data": 4, "fsdp": 2}
    np.testing.assert_allclose(_val_losses(tmp_path / "fsdp"), _val_losses(tmp_path / "dp"), rtol=1e-4)
    assert len(_val_losses(tmp_path / "fsdp")) == 2
    assert moved["final_val_loss"] == pytest.approx(dp["final_val_loss"], rel=1e-4)
    assert fsdp["state_bytes_per_device"] < 0.2 * dp["state_bytes_per_device"]
    assert fsdp["state_bytes_per_device"] < moved["state_bytes_per_device"] < 0.6 * dp["state_bytes_per_device"]


_RESTORE_SCRIPT = r"""
import json, sys, jax, numpy as np
from convnext_jax.train.checkpoint import Checkpointer
from convnext_jax.train.parallel import make_layout
import grain
from convnext_jax.train.state import TrainState
params = {"w": np.arange(64 * 24, dtype=np.float32).reshape(64, 24), "b": np.arange(5, dtype=np.float32)}
state = TrainState(step=np.int32(7), params=params, opt_state={"m": jax.tree.map(np.copy, params)})
saved = make_layout(1, 8, min_shard_size=64).place_state(state)
loader = grain.MapDataset.range(10).to_iter_dataset()
it = iter(loader)
ckpt = Checkpointer(sys.argv[1], best_metric=None)
ckpt.save(1, saved, it)
ckpt.wait_until_finished()
target = make_layout(4, 2, min_shard_size=64).place_state(jax.tree.map(np.zeros_like, state))
restored = Checkpointer(sys.argv[1], best_metric=None).restore(1, target, iter(loader))
print(json.dumps({"equal": all(np.array_equal(np.asarray(restored.params[k]), params[k]) for k in params)
                  and int(restored.step) == 7,
                  "saved_spec": list(saved.params["w"].sharding.spec),
                  "restored_spec": list(restored.params["w"].sharding.spec),
                  "restored_mesh": dict(restored.params["w"].sharding.mesh.shape)}))
"""


def test_a_checkpoint_saved_on_one_mesh_restores_exactly_on_another(tmp_path):
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="8", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", _RESTORE_SCRIPT, str(tmp_path / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["equal"], out
    assert out["saved_spec"] == out["restored_spec"] == ["fsdp", None]
    assert out["restored_mesh"] == {"data": 4, "fsdp": 2}
