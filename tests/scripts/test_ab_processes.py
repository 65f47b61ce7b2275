"""scripts/ab_processes.py: variants in separate processes, timed in interleaved rounds."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ab_processes.py"
TINY = "dims=(16,24,32,48);depths=(1,1,1,1)"


def _run(*variants: str) -> subprocess.CompletedProcess:
    args = [
        sys.executable,
        str(SCRIPT),
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--rounds",
        "2",
        "--steps",
        "1",
        "--warmup",
        "1",
    ]
    for v in variants:
        args += ["--variant", v]
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def test_variants_with_options_and_environment_are_timed_side_by_side():
    result = _run(
        f"native:{TINY}", f"xla:{TINY};norm_impl=xla;gelu_impl=xla;XLA_FLAGS=--xla_cpu_enable_fast_math=false"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| native") or line.startswith("| xla")]
    assert len(rows) == 2
    assert all(float(row.split("|")[2]) > 0 for row in rows)


def test_bad_variants_are_reported():
    spec = importlib.util.spec_from_file_location("ab_processes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parse_variant = module.parse_variant
    assert parse_variant("a:dtype=bfloat16;X=1;depths=(1,1)") == (
        "a",
        {"X": "1"},
        {"dtype": "bfloat16", "depths": (1, 1)},
    )
    with pytest.raises(Exception, match="NAME:KEY=VALUE"):
        parse_variant("no-colon")
    result = _run(f"broken:{TINY};norm_impl=fast")
    assert result.returncode != 0 and "norm_impl must be one of" in result.stderr
    assert "variant 'broken' failed to build" in result.stderr
