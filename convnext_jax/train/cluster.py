"""Joining a multi-process job, and the persistent compilation cache.

`start_distributed` calls `jax.distributed.initialize` with explicit flags, or without arguments
when the environment is a multi-task SLURM step (`srun`) or an Open MPI launch (`mpirun`): JAX
reads the coordinator, process count and id from the scheduler's variables.
"""

from __future__ import annotations

import os

import jax


def cluster_kind(environ: dict[str, str] | None = None) -> str | None:
    """'slurm' or 'ompi' when this process is one of several tasks launched by them, else None."""
    env = os.environ if environ is None else environ
    slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
    if all(name in env for name in slurm) and int(env["SLURM_NTASKS"]) > 1:
        return "slurm"
    if int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1 and "OMPI_MCA_orte_hnp_uri" in env:
        return "ompi"
    return None


def start_distributed(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> str | None:
    """Initialise jax.distributed when this is a multi-process job; returns how ('flags', 'env',
    'slurm', 'ompi') or None for a single process."""
    if coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize(coordinator, num_processes, process_id)
        return "flags" if coordinator else "env"
    kind = cluster_kind()
    if kind:
        jax.distributed.initialize()  # JAX's cluster detection reads the scheduler's variables
    return kind


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "convnext_jax", "xla")


def enable_compile_cache(setting: str = "") -> str | None:
    """Turn on JAX's persistent compilation cache: `setting` is a directory, '' for the default
    (~/.cache/convnext_jax/xla, or $CONVNEXT_JAX_COMPILE_CACHE), or 'off'. A resumed run or a
    sweep trial with the same shapes then loads its compiled step instead of compiling it.
    Returns the directory in use (None when off)."""
    setting = setting or os.environ.get("CONVNEXT_JAX_COMPILE_CACHE", "")
    if setting.lower() in ("off", "none", "0", "false"):
        return None
    directory = os.path.abspath(os.path.expanduser(setting or default_cache_dir()))
    if jax.config.jax_compilation_cache_dir == directory:
        return directory
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory
