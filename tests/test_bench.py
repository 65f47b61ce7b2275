"""The benchmark commands run and print their tables (correctness only, never timings)."""

import json

from convnext_jax.bench.__main__ import main


def test_train_bench_jax_and_torch(tmp_path, capsys):
    out = tmp_path / "train.json"
    assert main(["train", "--model", "convnext_atto", "--image-size", "32", "--batch-size", "2", "--num-classes",
                 "10", "--steps", "1", "--warmup", "0", "--scan", "true", "--torch", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| jax float32 dw=auto scan |" in table and "| torch eager |" in table
    rows = json.loads(out.read_text())["rows"]
    assert all(row["img_per_s"] > 0 for row in rows) and len(rows) == 2


def test_dwconv_bench(capsys):
    assert main(["dwconv", "--batch-size", "2", "--sizes", "8", "--channels", "4", "--steps", "1"]) == 0
    table = capsys.readouterr().out
    assert "| jax lax | 2x8x8x4 |" in table and "| jax shift |" in table and "torch" in table
