"""One real SLURM cluster for the whole test session (tests/slurm/cluster.py)."""

import pytest

from tests.slurm.cluster import SlurmCluster, available


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    missing = available()
    if missing:  # .ci/run installs them; a machine without them cannot run these tests
        pytest.fail(f"SLURM test cluster: {missing}")
    cluster = SlurmCluster(str(tmp_path_factory.mktemp("slurm"))).start()
    yield cluster
    cluster.stop()
