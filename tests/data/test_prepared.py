"""Prepared datasets: `python -m convnext_jax.data.prepare` re-encodes a source into ArrayRecord shards
of JPEGs at most --max_size px, `prepared:/path` reads them (and trains), mistakes are short errors."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from convnext_jax.data import create_loader, eval_transforms, make_source
from convnext_jax.data.prepare import main as prepare
from convnext_jax.data.prepared import decode_record

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 2)):
        for c in range(2):
            os.makedirs(root / split / f"class_{c}")
            for i in range(count):
                size = (200, 120) if i % 2 else (40, 30)  # large (resized) or small (kept as is)
                pixels = rng.integers(0, 256, size[::-1] + (3,), dtype=np.uint8)
                pixels[..., c] = 230
                Image.fromarray(pixels).save(root / split / f"class_{c}" / f"{i}.{'png' if i == 2 else 'jpg'}")
    (root / "train" / "class_1" / "broken.jpg").write_bytes(b"not a jpeg")
    return root


@pytest.fixture(scope="module")
def prepared(folder, tmp_path_factory):
    destination = tmp_path_factory.mktemp("prepared") / "p64"
    assert (
        prepare([f"folder:{folder}", str(destination), "--max_size", "64", "--workers", "1", "--shard_size", "5"]) == 0
    )
    return destination


def test_manifest_shards_sizes_and_labels(folder, prepared):
    manifest = json.loads((prepared / "prepared.json").read_text())
    assert manifest["class_names"] == ["class_0", "class_1"] and manifest["max_size"] == 64
    assert manifest["splits"]["train"]["count"] == 12 and manifest["splits"]["val"]["count"] == 4
    assert len(manifest["splits"]["train"]["shards"]) == 3  # 5 images per shard
    train = make_source(f"prepared:{prepared}", "train")
    assert len(train) == 12 and train.num_classes == 2
    for index in range(len(train)):
        record = train[index]
        assert max(record["image"].size) <= 64 and record["image"].format == "JPEG"
        pixels = record["image"].decode_array().astype(np.float32)
        assert pixels[..., record["label"]].mean() > 150  # the class's bright channel survived re-encoding
    small = (folder / "train" / "class_0" / "0.jpg").read_bytes()  # 40x30 JPEG: stored byte for byte
    assert any(decode_record(train._records[i])[1] == small for i in range(len(train)))
    clone = pickle.loads(pickle.dumps(train))  # worker processes get a copy that reopens the shards
    assert len(clone) == 12 and clone[3]["label"] == train[3]["label"]
    batch = next(iter(create_loader(train, batch_size=4, transforms=eval_transforms(32), shuffle=False, num_epochs=1)))
    assert batch["image"].shape == (4, 32, 32, 3) and batch["image"].dtype == np.uint8


def test_mistakes_are_short_errors_and_leave_nothing(folder, prepared, tmp_path, capsys):
    for args, message in (
        ([f"folder:{folder}", str(prepared)], "already holds a prepared dataset"),
        (["folder:/no/such/dir", str(tmp_path / "new")], "does not exist"),
        ([f"folder:{folder}", str(tmp_path / "x"), "--max_size", "4"], "--max_size must be"),
    ):
        with pytest.raises(SystemExit) as exited:
            prepare(args)
        assert exited.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "new").exists() and not (tmp_path / "x").exists()
    with pytest.raises(FileNotFoundError, match="not a prepared dataset"):
        make_source(f"prepared:{tmp_path}", "train")


def test_training_reads_a_prepared_dataset(prepared, tmp_path):
    args = [
        "--config",
        "configs/embedded_digits.py",
        "--workdir",
        str(tmp_path / "run"),
        f"--config.data.source=prepared:{prepared}",
        "--config.data.image_size=32",
        "--config.batch_size=4",
        "--config.num_epochs=1",
        "--config.model.depths=(1, 1, 1, 1)",
        "--config.model.dims=(16, 24, 32, 48)",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "convnext_jax.main", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["final_val_count"] == 4 and summary["num_classes"] == 2
    assert json.loads((tmp_path / "run" / "class_names.json").read_text()) == ["class_0", "class_1"]
