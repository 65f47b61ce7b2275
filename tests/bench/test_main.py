"""The benchmark commands run and print their tables (correctness only, never timings)."""

import json

import pytest

from convnext_jax.bench.__main__ import main


def test_train_bench_jax_and_torch(tmp_path, capsys):
    out = tmp_path / "train.json"
    assert (
        main(
            [
                "train",
                "--model",
                "convnext_atto",
                "--image_size",
                "32",
                "--batch_size",
                "2",
                "--num_classes",
                "10",
                "--steps",
                "1",
                "--rounds",
                "2",
                "--warmup",
                "0",
                "--scan",
                "true",
                "--dwconv_impl",
                "auto",
                "lax",
                "--torch",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "| jax float32 dw=auto scan |" in table and "| jax float32 dw=lax scan |" in table
    assert "| torch eager |" in table and "2 interleaved rounds x 1 calls" in table
    assert "| x vs torch eager |" in table and "None" not in table  # no column that a CPU cannot fill
    rows = json.loads(out.read_text())["rows"]
    assert all(row["img_per_s"] > 0 and row["min_s"] <= row["median_s"] for row in rows) and len(rows) == 3
    jax_row, lax_row = rows[0], rows[1]
    # 6 x forward MACs x batch: the analytic model FLOPs; XLA counts at least the same work when
    # every op is an XLA op (not the CPU depthwise-conv custom call that 'auto' picks on CPU)
    assert lax_row["model_gflops_per_step"] > 0 and lax_row["xla_gflops_per_step"] >= lax_row["model_gflops_per_step"]
    assert jax_row["xla_peak_mib"] >= jax_row["xla_args_mib"] > 0  # params + optimizer state + batch
    assert jax_row["mfu"] is None  # no peak FLOP/s is known for a CPU
    assert "| x (min) |" in table and rows[2]["compile_s"] is None  # eager torch compiles nothing (was negative)
    assert all(row["compile_s"] is None or row["compile_s"] >= 0 for row in rows)


def test_a_busy_machine_is_said_and_the_ratio_of_minima_given():
    from convnext_jax.bench.timing import add_speedup, spread_warning

    rows = [
        {"framework": "jax", "median_s": 0.2, "min_s": 0.1, "img_per_s": 10.0},
        {"framework": "torch eager", "median_s": 0.3, "min_s": 0.29, "img_per_s": 6.67},
    ]
    add_speedup(rows)
    assert rows[0]["x (min)"] == pytest.approx(2.9) and rows[0]["x vs torch eager"] == pytest.approx(1.5, rel=1e-3)
    warning = spread_warning(rows)
    assert "machine was busy" in warning and "jax 2.00x" in warning and "torch eager" not in warning
    rows[0]["median_s"] = 0.11
    assert spread_warning(rows) is None


def test_infer_bench_jax_and_torch(capsys):
    assert (
        main(
            [
                "infer",
                "--model",
                "convnext_atto",
                "--image-size",
                "32",
                "--batch-size",
                "2",
                "--num-classes",
                "10",
                "--steps",
                "1",
                "--warmup",
                "0",
                "--torch",
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "| jax float32 dw=auto |" in table and "| torch eager |" in table and "inference" in table  # dashes too


def test_dwconv_bench(capsys):
    assert main(["dwconv", "--batch_size", "2", "--sizes", "8", "--channels", "4", "--steps", "1"]) == 0
    table = capsys.readouterr().out
    assert "| jax lax | 2x8x8x4 |" in table and "| jax shift |" in table and "torch" in table


def test_bad_arguments_are_one_short_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--model", "convnext_tiy", "--image_size", "8", "--steps", "0"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("error: ") and "Traceback" not in err
    assert "--steps must be >= 1; got 0" in err and "--image_size must be >= 32" in err and "convnext_tiny" in err


def test_fcmae_bench_jax_and_the_dense_pytorch_emulation(capsys):
    assert (
        main(
            [
                "fcmae",
                "--image_size",
                "64",
                "--batch_size",
                "2",
                "--steps",
                "1",
                "--rounds",
                "1",
                "--warmup",
                "0",
                "--torch",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| jax float32 dw=auto |" in out and "| torch dense eager |" in out and "FCMAE pre-training step" in out
    assert "on removed positions (75% of the patches" in out  # 64 px: 4 patches, int(4 x 0.4) = 1 kept


def test_data_bench_ours_torch_and_prepared(tmp_path, capsys):
    out = tmp_path / "data.json"
    assert (
        main(
            [
                "data",
                "--images",
                "8",
                "--workers",
                "1",
                "--image_size",
                "32",
                "--batch_size",
                "2",
                "--epochs",
                "2",
                "--torch",
                "--prepared_max_size",
                "64",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    for name in (
        "ours, threads",
        "ours, processes",
        "ours, prepared 64px, threads",
        "torchvision + timm",
        "torchvision + timm, 64px files",
    ):
        assert f"| {name} | 1 |" in table
    for stage in ("decode + crop/resize", "RandAugment", "collate (uint8)", "MaybeToTensor", "collate (float32)"):
        assert f"| {stage} |" in table
    rows = json.loads(out.read_text())["rows"]
    throughput = [r for r in rows if "img_per_s" in r]
    assert len(throughput) == 5 and all(r["img_per_s"] > 0 and r["scaling"] == 1 for r in throughput)


def test_data_bench_too_few_images_is_one_short_error(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["data", "--images", "16", "--workers", "2", "--epochs", "1"])
    assert exited.value.code == 2 and "at least 2 batches" in capsys.readouterr().err


def test_memory_bench_plans_fsdp_on_eight_simulated_devices(tmp_path):
    """bench memory on 8 CPU devices: one row per mesh from XLA's memory analysis (nothing
    allocated); FSDP over 8 holds ~1/8 of the state per device. An fsdp size that does not divide
    the devices is a short error."""
    import os
    import subprocess
    import sys

    root = os.path.join(os.path.dirname(__file__), "..", "..")
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="8", JAX_PLATFORMS="cpu")
    out = tmp_path / "memory.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "convnext_jax.bench",
            "memory",
            "--model",
            "convnext_atto",
            "--image_size",
            "32",
            "--batch_size",
            "2",
            "--fsdp",
            "1",
            "8",
            "--budget_gib",
            "1",
            "--json",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| 8x1 | 2 |" in result.stdout and "| 1x8 | 2 |" in result.stdout and "fits_1gib" in result.stdout
    rows = {r["mesh"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["1x8"]["state_gib_per_device"] < 0.2 * rows["8x1"]["state_gib_per_device"]
    assert rows["1x8"]["xla_peak_gib"] < rows["8x1"]["xla_peak_gib"] and rows["8x1"]["fits_1gib"]
    bad = subprocess.run(
        [sys.executable, "-m", "convnext_jax.bench", "memory", "--fsdp", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
    )
    assert bad.returncode == 2 and "mesh.fsdp=3 does not divide the 8 devices" in bad.stderr
