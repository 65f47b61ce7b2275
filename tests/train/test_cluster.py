"""Cluster detection (SLURM, Open MPI) and the persistent compilation cache setting."""

import jax

from convnext_jax.train.cluster import cluster_kind, default_cache_dir, enable_compile_cache

SLURM = {
    "SLURM_JOB_ID": "7",
    "SLURM_STEP_NODELIST": "node[001-002]",
    "SLURM_NTASKS": "2",
    "SLURM_PROCID": "1",
    "SLURM_LOCALID": "0",
}


def test_cluster_kind_from_the_schedulers_variables():
    assert cluster_kind(SLURM) == "slurm"
    assert cluster_kind({**SLURM, "SLURM_NTASKS": "1"}) is None  # one task: a plain single-process run
    assert cluster_kind({k: v for k, v in SLURM.items() if k != "SLURM_STEP_NODELIST"}) is None  # sbatch shell
    assert cluster_kind({"OMPI_COMM_WORLD_SIZE": "4", "OMPI_MCA_orte_hnp_uri": "x"}) == "ompi"
    assert cluster_kind({}) is None


def test_compile_cache_directory_default_and_off(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == str(tmp_path / "convnext_jax" / "xla")
    assert enable_compile_cache("off") is None
    previous = jax.config.jax_compilation_cache_dir
    try:
        assert enable_compile_cache(str(tmp_path / "cache")) == str(tmp_path / "cache")
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "cache") and (tmp_path / "cache").is_dir()
    finally:
        jax.config.update("jax_compilation_cache_dir", previous)
