"""How the arrays of training are laid out over devices: the mesh, the batch's sharding and the
train state's sharding, in one place.

The mesh is 2-D, `data` x `fsdp` (`config.mesh`). The batch is split over both axes (every
device gets its own examples). With `fsdp` = 1 the state is replicated (data parallelism);
with `fsdp` > 1 every large enough array of the state (params, optimizer moments, EMA) is split
along one of its dimensions over the `fsdp` axis (ZeRO-3 / big_vision's FSDP): the train step
gathers the params for use and reduce-scatters the gradients (`train/steps.py`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from convnext_jax.errors import ConfigError

DATA_AXIS, FSDP_AXIS = "data", "fsdp"
MIN_SHARD_SIZE = 2**14  # arrays with fewer elements stay replicated (gathering them costs more than it saves)


@dataclasses.dataclass(frozen=True)
class Layout:
    mesh: Mesh
    data_axis: str = DATA_AXIS
    fsdp_axis: str = FSDP_AXIS
    min_shard_size: int = MIN_SHARD_SIZE

    @property
    def batch_axes(self) -> tuple[str, ...]:
        """The mesh axes the batch is split over (all of them)."""
        return (self.data_axis, self.fsdp_axis)

    @property
    def replicas(self) -> int:
        """Devices the batch is split over (every device)."""
        return math.prod(self.mesh.shape[axis] for axis in self.batch_axes)

    @property
    def fsdp(self) -> int:
        """Devices each sharded state array is split over."""
        return self.mesh.shape[self.fsdp_axis]

    @property
    def batch_spec(self) -> PartitionSpec:
        """[batch, ...] arrays: split along the batch axis."""
        return PartitionSpec(self.batch_axes)

    @property
    def micro_batch_spec(self) -> PartitionSpec:
        """[accumulation step, micro-batch, ...] arrays: split along the micro-batch axis."""
        return PartitionSpec(None, self.batch_axes)

    def sharding(self, spec: PartitionSpec) -> NamedSharding:
        return NamedSharding(self.mesh, spec)

    def shard_dim(self, shape: tuple[int, ...], name: str = "") -> int | None:
        """The dimension an array of `shape` is split along over the fsdp axis (None: replicated).

        The largest dimension that `fsdp` divides (the last of equals); arrays under
        `min_shard_size` elements stay replicated. A larger array that no dimension of which `fsdp`
        divides is a ConfigError naming it (`name`)."""
        if self.fsdp == 1 or not shape or math.prod(shape) < self.min_shard_size:
            return None
        candidates = [d for d, size in enumerate(shape) if size % self.fsdp == 0]
        if not candidates:
            raise ConfigError(
                f"mesh.fsdp={self.fsdp} divides no dimension of {name or 'an array'} {tuple(shape)}: "
                f"use an fsdp size that divides the model's channel widths, or keep arrays of this "
                f"size replicated with mesh.fsdp_min_size={math.prod(shape) + 1}"
            )
        return max(candidates, key=lambda d: (shape[d], d))

    def state_dims(self, state: Any) -> Any:
        """The tree of `shard_dim`s of the state's leaves (-1 for replicated, so the tree keeps its leaves)."""

        def dim(path: Any, leaf: Any) -> int:
            found = self.shard_dim(tuple(np.shape(leaf)), jax.tree_util.keystr(path).removesuffix(".value"))
            return -1 if found is None else found

        return jax.tree_util.tree_map_with_path(dim, state)

    def state_specs(self, state: Any = None) -> Any:
        """PartitionSpecs of the train state: replicated without FSDP (a prefix of any tree);
        with FSDP one spec per leaf, splitting the `shard_dim` over the fsdp axis."""
        if self.fsdp == 1:
            return PartitionSpec()
        if state is None:
            raise ValueError("with mesh.fsdp > 1 the state's specs depend on its shapes: pass the state")

        def spec(leaf: Any, dim: int) -> PartitionSpec:
            if dim < 0:
                return PartitionSpec()
            return PartitionSpec(*[self.fsdp_axis if d == dim else None for d in range(np.ndim(leaf))])

        return jax.tree.map(spec, state, self.state_dims(state))

    def state_sharding(self, state: Any) -> Any:
        specs = self.state_specs(state)
        return jax.tree.map(self.sharding, specs, is_leaf=lambda x: isinstance(x, PartitionSpec))

    def place_state(self, state: Any) -> Any:
        """Put a host/device state on the mesh with the state's sharding."""
        return jax.device_put(state, self.state_sharding(state))


def state_bytes_per_device(state: Any) -> int:
    """Bytes of `state`'s arrays held by one device (the first addressable one)."""
    device = jax.local_devices()[0]
    total = 0
    for leaf in jax.tree.leaves(state):
        if isinstance(leaf, jax.Array):
            total += sum(s.data.nbytes for s in leaf.addressable_shards if s.device == device)
        else:
            total += np.asarray(leaf).nbytes
    return total


def mesh_shape(data: int, fsdp: int, devices: int) -> tuple[int, int]:
    """(data, fsdp) with one -1 filled in; a ConfigError when the product is not `devices`."""
    for name, value in (("mesh.data", data), ("mesh.fsdp", fsdp)):
        if value == 0 or value < -1:
            raise ConfigError(f"{name} must be a positive number of devices or -1 (the rest); got {value}")
    if data == -1 and fsdp == -1:
        raise ConfigError(
            "mesh.data and mesh.fsdp cannot both be -1: set one of them (e.g. mesh.fsdp=-1 for "
            "all-FSDP, mesh.data=-1 for data parallelism)"
        )
    known = data if fsdp == -1 else fsdp
    if -1 in (data, fsdp):
        if devices % known:
            raise ConfigError(
                f"{'mesh.data' if fsdp == -1 else 'mesh.fsdp'}={known} does not divide the "
                f"{devices} devices: use a divisor of {devices}"
            )
        data, fsdp = (data, devices // data) if fsdp == -1 else (devices // fsdp, fsdp)
    if data * fsdp != devices:
        raise ConfigError(
            f"mesh.data x mesh.fsdp = {data} x {fsdp} = {data * fsdp}, but there are {devices} "
            f"devices: their product must be the device count (set one of them to -1 for the rest)"
        )
    return data, fsdp


def make_layout(
    data: int = -1, fsdp: int = 1, devices: list[jax.Device] | None = None, min_shard_size: int = MIN_SHARD_SIZE
) -> Layout:
    """A data x fsdp layout over `devices` (default: every device of every process, in JAX's
    order, so a process's devices hold a contiguous block of the batch)."""
    devices = list(devices if devices is not None else jax.devices())
    shape = mesh_shape(data, fsdp, len(devices))
    return Layout(Mesh(np.asarray(devices).reshape(shape), (DATA_AXIS, FSDP_AXIS)), min_shard_size=min_shard_size)


def data_parallel(devices: list[jax.Device] | None = None) -> Layout:
    """A data-parallel layout over `devices` (default: every device of every process)."""
    return make_layout(-1, 1, devices)


def layout_of(config: Any) -> Layout:
    """The layout `config.mesh` asks for."""
    mesh = config.get("mesh", {})
    return make_layout(
        mesh.get("data", -1), mesh.get("fsdp", 1), min_shard_size=mesh.get("fsdp_min_size", MIN_SHARD_SIZE)
    )
