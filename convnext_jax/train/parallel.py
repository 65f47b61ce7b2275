"""How the arrays of training are laid out over devices: the mesh, the batch's sharding and the
train state's sharding, in one place.

Today: a 1-D `data` mesh over all devices; batches are split along it, the state is replicated.
The steps and the engine take every sharding from a `Layout`, so a second mesh axis for FSDP
(state specs derived from parameter shapes) changes this module, not them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


@dataclasses.dataclass(frozen=True)
class Layout:
    mesh: Mesh
    data_axis: str = DATA_AXIS

    @property
    def replicas(self) -> int:
        """Devices the batch is split over."""
        return self.mesh.shape[self.data_axis]

    @property
    def batch_spec(self) -> PartitionSpec:
        """[batch, ...] arrays: split along the batch axis."""
        return PartitionSpec(self.data_axis)

    @property
    def micro_batch_spec(self) -> PartitionSpec:
        """[accumulation step, micro-batch, ...] arrays: split along the micro-batch axis."""
        return PartitionSpec(None, self.data_axis)

    def sharding(self, spec: PartitionSpec) -> NamedSharding:
        return NamedSharding(self.mesh, spec)

    def state_specs(self, state: Any = None) -> Any:
        """PartitionSpecs of the train state (a prefix of its tree): replicated. (FSDP will derive
        them from the state's shapes.)"""
        del state
        return PartitionSpec()

    def state_sharding(self, state: Any) -> Any:
        specs = self.state_specs(state)
        return jax.tree.map(self.sharding, specs, is_leaf=lambda x: isinstance(x, PartitionSpec))

    def place_state(self, state: Any) -> Any:
        """Put a host/device state on the mesh with the state's sharding."""
        return jax.device_put(state, self.state_sharding(state))


def data_parallel(devices: list[jax.Device] | None = None) -> Layout:
    """A 1-D data-parallel layout over `devices` (default: every device of every process)."""
    return Layout(Mesh(np.asarray(devices if devices is not None else jax.devices()), (DATA_AXIS,)))
