"""Utilisation figures: the peak table, model FLOPs of a train step, MFU."""

import pytest


def test_peak_table_and_mfu():
    from convnext_jax.bench.utilization import mfu, peak_tflops, train_model_flops
    from convnext_jax.models import model_config

    class H100:
        device_kind = "NVIDIA H100 80GB HBM3"

    assert peak_tflops("bfloat16", H100()) == 989.0 and peak_tflops("float16", H100()) is None
    flops = train_model_flops(model_config("convnext_tiny"), 224, 256)
    assert flops / 256 / 6 / 1e9 == pytest.approx(4.456, rel=1e-3)  # timm's model card: 4.47 GMACs
    assert mfu(flops, 1.0, 989.0) == pytest.approx(flops / 989e12)
