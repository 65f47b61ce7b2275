"""Host -> device: put per-process batches on the mesh, sharded along the batch axis, ahead of use."""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterable, Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def data_sharding(mesh: Mesh | None = None, axis: str = "data") -> NamedSharding:
    """Batch axis split over the mesh's `axis` (default: a 1-D mesh over all devices)."""
    if mesh is None:
        mesh = Mesh(np.asarray(jax.devices()), (axis,))
    return NamedSharding(mesh, PartitionSpec(axis))


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
            raise ValueError(f"batch field {key!r} has {value.shape[axis]} examples on this process, not divisible by "
                             f"its {local_devices} devices: choose a per-process batch size that is a multiple "
                             f"of {local_devices}")
        global_shape = value.shape[:axis] + (value.shape[axis] * processes,) + value.shape[axis + 1:]
        out[key] = jax.make_array_from_process_local_data(sharding, value, global_shape)
    return out


def prefetch_to_device(batches: Iterable[dict[str, Any]], sharding: NamedSharding, size: int = 2
                       ) -> Iterator[dict[str, jax.Array]]:
    """Yield device batches while a background thread transfers the next `size` ones."""
    buffer: queue.Queue = queue.Queue(maxsize=size)
    done = object()

    def producer() -> None:
        try:
            for batch in batches:
                buffer.put(shard_batch(batch, sharding))
        except BaseException as e:  # re-raised in the consumer with its traceback
            buffer.put(e)
            return
        buffer.put(done)

    threading.Thread(target=producer, daemon=True).start()
    while True:
        item = buffer.get()
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        yield item
