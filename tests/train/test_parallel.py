"""The device layout: batch and micro-batch specs over the whole mesh, the state replicated
without FSDP (FSDP's layout: tests/train/test_fsdp.py)."""

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from convnext_jax.train.parallel import DATA_AXIS, FSDP_AXIS, data_parallel


def test_data_parallel_layout():
    layout = data_parallel()
    assert layout.replicas == jax.device_count() and layout.fsdp == 1
    assert layout.mesh.axis_names == (DATA_AXIS, FSDP_AXIS)
    assert layout.batch_spec == PartitionSpec((DATA_AXIS, FSDP_AXIS))
    assert layout.micro_batch_spec == PartitionSpec(None, (DATA_AXIS, FSDP_AXIS))
    state = layout.place_state({"params": {"w": jnp.ones((3, 2))}, "step": jnp.zeros((), jnp.int32)})
    assert state["params"]["w"].sharding.is_fully_replicated
    assert layout.state_specs(state) == PartitionSpec()
