"""Host -> device: put this process's part of a batch on the mesh, sharded along the batch axis."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding


def _sharded_axis(sharding: NamedSharding) -> int:
    """Index of the (first) array axis the sharding splits over devices; 0 if none is split."""
    for index, entry in enumerate(sharding.spec):
        if entry is not None:
            return index
    return 0


def shard_batch(batch: dict[str, Any], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Turn this process's part of the global batch into global jax.Arrays sharded on the batch
    axis (axis 0 for PartitionSpec('data'), axis 1 for micro-batches stacked as PartitionSpec(None, 'data'))."""
    local_devices = len(sharding.addressable_devices)
    axis = _sharded_axis(sharding)
    processes = len(sharding.device_set) // local_devices
    out = {}
    for key, value in batch.items():
        value = np.asarray(value)
        if value.shape[axis] % local_devices:
            raise ValueError(
                f"batch field {key!r} has {value.shape[axis]} examples on this process, not divisible by "
                f"its {local_devices} devices: choose a per-process batch size that is a multiple "
                f"of {local_devices}"
            )
        global_shape = value.shape[:axis] + (value.shape[axis] * processes,) + value.shape[axis + 1 :]
        out[key] = jax.make_array_from_process_local_data(sharding, value, global_shape)
    return out
