"""Stacked blocks in every execution mode (scan, remat policies and segments, op implementations)
compute the same loss and gradients; scan keeps the program flat in depth; every block gets its own
dropout key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import convnext_jax as cj
from convnext_jax.models.layers import drop_path

SMALL = dict(depths=(2, 1, 3, 1), dims=(8, 16, 24, 32), num_classes=5, dwconv_impl="lax")


def _loss_and_grads(model, x, y):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(params):
        logits = nnx.merge(graphdef, params, rest)(x)
        return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, y[:, None], -1)[:, 0])

    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params)
    return float(loss), jax.tree.leaves(grads)


@pytest.fixture(scope="module")
def reference_results(batch):
    """Loss and gradients of the plain (unrolled, no remat) model, computed once per variant."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = _loss_and_grads(cj.create_model(name, rngs=1, **SMALL), *batch)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.standard_normal((4, 32, 32, 3)), jnp.float32), jnp.asarray([0, 1, 2, 3])


def _jaxpr_size(depth, scan):
    model = cj.create_model(
        "convnext_atto", depths=(1, 1, depth, 1), dims=(8, 8, 8, 8), num_classes=2, scan_blocks=scan
    )
    graphdef, state = nnx.split(model)
    jaxpr = jax.make_jaxpr(lambda s, x: nnx.merge(graphdef, s)(x))(state, jnp.zeros((1, 32, 32, 3)))
    return len(jaxpr.jaxpr.eqns) + sum(
        len(e.params["jaxpr"].jaxpr.eqns) for e in jaxpr.jaxpr.eqns if e.primitive.name == "scan"
    )


@pytest.mark.parametrize("name", ["convnext_atto", "convnextv2_atto"])
@pytest.mark.parametrize(
    "options",
    [
        dict(scan_blocks=True),
        dict(remat="full"),
        dict(remat="dots", scan_blocks=True),
        dict(remat="full", remat_segments=2, scan_blocks=True),
        dict(remat="full", remat_segments=2),
    ],
)
def test_execution_options_preserve_loss_and_gradients(name, options, batch, reference_results):
    ref_loss, ref_grads = reference_results(name)
    loss, grads = _loss_and_grads(cj.create_model(name, rngs=1, **SMALL, **options), *batch)
    assert loss == pytest.approx(ref_loss, abs=1e-5)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, atol=1e-5, rtol=1e-4)


def test_scan_keeps_program_size_flat_in_depth():
    assert _jaxpr_size(3, scan=True) == _jaxpr_size(24, scan=True)
    assert _jaxpr_size(24, scan=False) > 3 * _jaxpr_size(3, scan=False)


@pytest.mark.parametrize("scan", [False, True])
def test_every_block_gets_its_own_key(scan, monkeypatch):
    """Record the key each block's drop_path receives (also inside lax.scan) and the rate."""
    import convnext_jax.models.convnext as convnext_module

    seen = []

    def recording_drop_path(x, rate, key):
        jax.debug.callback(
            lambda k, r: seen.append((tuple(np.asarray(k).ravel()), float(r))), jax.random.key_data(key), rate
        )
        return drop_path(x, rate, key)

    monkeypatch.setattr(convnext_module, "drop_path", recording_drop_path)
    depths = (1, 2, 6, 1)
    model = cj.create_model(
        "convnext_atto",
        drop_path_rate=0.3,
        depths=depths,
        dims=(8, 8, 8, 8),
        num_classes=2,
        scan_blocks=scan,
        dwconv_impl="lax",
    )
    x = jnp.ones((2, 32, 32, 3))
    jax.block_until_ready(model(x, train=True, rng=jax.random.key(0)))
    jax.effects_barrier()
    # stage 0 (a single block at rate 0) needs no mask; every other block draws its own
    stochastic = sum(depths) - 1
    assert len(seen) == stochastic
    assert len({k for k, _ in seen}) == stochastic  # independent RNG per block
    np.testing.assert_allclose(sorted(r for _, r in seen), np.linspace(0, 0.3, sum(depths))[1:], atol=1e-6)
    first_keys = {k for k, _ in seen}
    seen.clear()
    jax.block_until_ready(model(x, train=True, rng=jax.random.key(1)))
    jax.effects_barrier()
    assert len(seen) == stochastic and not first_keys & {k for k, _ in seen}
