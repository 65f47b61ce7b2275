"""The device layout: batch and micro-batch specs over the data axis, the state replicated."""

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from convnext_jax.train.parallel import DATA_AXIS, data_parallel


def test_data_parallel_layout():
    layout = data_parallel()
    assert layout.replicas == jax.device_count() and layout.data_axis == DATA_AXIS
    assert layout.batch_spec == PartitionSpec("data") and layout.micro_batch_spec == PartitionSpec(None, "data")
    state = layout.place_state({"params": {"w": jnp.ones((3, 2))}, "step": jnp.zeros((), jnp.int32)})
    assert state["params"]["w"].sharding.is_fully_replicated
    assert layout.state_specs(state) == PartitionSpec()
