"""Batches reach the devices sharded on the batch axis; errors are clear."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np

from convnext_jax.data.device import shard_batch
from convnext_jax.train.parallel import data_parallel


def data_sharding():
    layout = data_parallel()
    return layout.sharding(layout.batch_spec)


def test_shard_batch_on_one_device():
    batch = {"image": np.ones((4, 8, 8, 3), np.float32), "label": np.arange(4)}
    out = shard_batch(batch, data_sharding())
    assert isinstance(out["image"], jax.Array) and out["image"].shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(out["label"], np.arange(4))


def test_batch_is_split_over_eight_devices():
    code = textwrap.dedent("""
        import numpy as np
        from convnext_jax.data.device import shard_batch
        from convnext_jax.train.parallel import data_parallel
        layout = data_parallel()
        sharding = layout.sharding(layout.batch_spec)
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
