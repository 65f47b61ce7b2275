"""Stochastic depth: timm's linear rule, per-sample masks, independent RNG per block."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from timm.layers import calculate_drop_path_rates

import convnext_jax as cj
from convnext_jax.models import drop_path_rates
from convnext_jax.models.layers import drop_path

SMALL = dict(depths=(2, 1, 3, 1), dims=(8, 16, 24, 32), num_classes=5, dwconv_impl="lax")


def test_rates_follow_timm_linear_rule():
    for depths, rate in [((3, 3, 9, 3), 0.1), ((2, 2, 6, 2), 0.3), ((1,), 0.2)]:
        ours = drop_path_rates(depths, rate)
        theirs = calculate_drop_path_rates(rate, list(depths), stagewise=True)
        assert [len(s) for s in ours] == list(depths)
        np.testing.assert_allclose(np.concatenate(ours), np.concatenate(theirs), atol=1e-7)


def test_drop_path_drops_whole_samples_and_rescales():
    x = jnp.ones((4000, 2, 2, 3))
    out = np.asarray(drop_path(x, 0.25, jax.random.key(0)))
    per_sample = out.reshape(4000, -1)
    values = np.unique(per_sample)
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / 0.75, rel=1e-6)
    assert np.all(per_sample.min(1) == per_sample.max(1))  # whole sample kept or dropped
    assert abs((per_sample[:, 0] == 0).mean() - 0.25) < 0.03
    assert abs(out.mean() - 1.0) < 0.05  # expectation preserved
    np.testing.assert_array_equal(drop_path(x, 0.0, jax.random.key(0)), x)


def test_train_mode_is_stochastic_and_eval_mode_deterministic():
    model = cj.create_model("convnext_atto", drop_path_rate=0.5, ls_init_value=1.0, **SMALL)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 32, 32, 3)), jnp.float32)
    eval_out = model(x)
    np.testing.assert_array_equal(model(x, train=False), eval_out)
    a = model(x, train=True, rng=jax.random.key(1))
    b = model(x, train=True, rng=jax.random.key(1))
    c = model(x, train=True, rng=jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, eval_out)
    with pytest.raises(ValueError, match="RNG key"):
        model(x, train=True)


def test_zero_rate_train_equals_eval():
    model = cj.create_model("convnextv2_atto", drop_path_rate=0.0, **SMALL)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 32, 32, 3)), jnp.float32)
    np.testing.assert_array_equal(model(x, train=True), model(x))


@pytest.mark.parametrize("scan", [False, True])
def test_every_block_gets_its_own_key(scan, monkeypatch):
    """Record the key each block's drop_path receives (also inside lax.scan) and the rate."""
    import convnext_jax.models.convnext as convnext_module

    seen = []

    def recording_drop_path(x, rate, key):
        jax.debug.callback(lambda k, r: seen.append((tuple(np.asarray(k).ravel()), float(r))),
                           jax.random.key_data(key), rate)
        return drop_path(x, rate, key)

    monkeypatch.setattr(convnext_module, "drop_path", recording_drop_path)
    depths = (1, 2, 6, 1)
    model = cj.create_model("convnext_atto", drop_path_rate=0.3, depths=depths, dims=(8, 8, 8, 8),
                            num_classes=2, scan_blocks=scan, dwconv_impl="lax")
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
