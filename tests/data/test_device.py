"""Batches reach the devices sharded on the batch axis; errors are clear; prefetch keeps order."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from convnext_jax.data.device import data_sharding, prefetch_to_device, shard_batch


def test_shard_batch_on_one_device():
    batch = {"image": np.ones((4, 8, 8, 3), np.float32), "label": np.arange(4)}
    out = shard_batch(batch, data_sharding())
    assert isinstance(out["image"], jax.Array) and out["image"].shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(out["label"], np.arange(4))


def test_prefetch_keeps_order_and_reraises():
    batches = [{"x": np.full((2,), i)} for i in range(5)]
    assert [int(b["x"][0]) for b in prefetch_to_device(iter(batches), data_sharding())] == list(range(5))

    def broken():
        yield {"x": np.zeros(2)}
        raise RuntimeError("decoder failed")

    it = prefetch_to_device(broken(), data_sharding())
    next(it)
    with pytest.raises(RuntimeError, match="decoder failed"):
        next(it)


def test_batch_is_split_over_eight_devices():
    code = textwrap.dedent("""
        import numpy as np
        from convnext_jax.data.device import data_sharding, shard_batch
        sharding = data_sharding()
        out = shard_batch({"label": np.arange(16)}, sharding)
        shards = sorted((s.index[0].start, s.data.shape[0]) for s in out["label"].addressable_shards)
        assert shards == [(2 * i, 2) for i in range(8)], shards
        try:
            shard_batch({"label": np.arange(12)}, sharding)
        except ValueError as e:
            assert "multiple of 8" in str(e)
        else:
            raise AssertionError("no error for 12 examples on 8 devices")
        print("ok")
    """)
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="8", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
