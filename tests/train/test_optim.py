"""Schedules and the optimizer chain."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch

from convnext_jax.train.optim import build_optimizer, lr_schedule, scaled_lr


def test_cosine_with_warmup_matches_timm_shape():
    sched = lr_schedule(1e-3, 100, schedule="cosine", warmup_steps=10, min_lr=1e-5)
    assert float(sched(0)) == 0.0 and float(sched(5)) == pytest.approx(5e-4)
    assert float(sched(10)) == pytest.approx(1e-3)
    assert float(sched(55)) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5), rel=1e-4)
    assert float(sched(100)) == pytest.approx(1e-5, rel=1e-4)
    lrs = np.array([float(sched(s)) for s in range(10, 101)])
    assert np.all(np.diff(lrs) <= 1e-12)


def test_onecycle_and_constant():
    one = lr_schedule(1e-2, 100, schedule="onecycle", warmup_steps=30)
    assert float(one(30)) == pytest.approx(1e-2, rel=1e-3) and float(one(0)) < 1e-3 and float(one(100)) < 1e-5
    const = lr_schedule(3e-4, 50, schedule="constant", warmup_steps=5)
    assert float(const(2)) < 3e-4 and float(const(40)) == pytest.approx(3e-4)
    with pytest.raises(ValueError, match="schedule"):
        lr_schedule(1e-3, 10, schedule="step")


def test_lr_scaling_rules():
    assert scaled_lr(4e-3, 4096, rule="linear", base_batch=4096) == pytest.approx(4e-3)
    assert scaled_lr(1e-3, 1024, rule="linear") == pytest.approx(4e-3)
    assert scaled_lr(1e-3, 1024, rule="sqrt") == pytest.approx(2e-3)
    assert scaled_lr(1e-3, 1024, rule="none") == 1e-3
    with pytest.raises(ValueError):
        scaled_lr(1e-3, 64, rule="cubic")


def _optim(**kw):
    base = dict(name="adamw", b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.05, clip_grad_norm=0.0, momentum=0.9,
                grad_accum_steps=1)
    base.update(kw)
    return ml_collections.ConfigDict(base)


def test_adamw_with_mask_matches_torch_param_groups():
    params = {"conv": {"kernel": jnp.ones((3, 3)), "bias": jnp.ones((3,))}}
    grads = {"conv": {"kernel": jnp.full((3, 3), 0.5), "bias": jnp.full((3,), -0.5)}}
    tx = build_optimizer(_optim(), params, lr_schedule(0.1, 10, schedule="constant"))
    updates, _ = tx.update(grads, tx.init(params), params)
    kernel = torch.nn.Parameter(torch.ones(3, 3))
    bias = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([{"params": [kernel], "weight_decay": 0.05}, {"params": [bias], "weight_decay": 0.0}],
                            lr=0.1, betas=(0.9, 0.999), eps=1e-8)
    kernel.grad, bias.grad = torch.full((3, 3), 0.5), torch.full((3,), -0.5)
    opt.step()
    np.testing.assert_allclose(1 + updates["conv"]["kernel"], kernel.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(1 + updates["conv"]["bias"], bias.detach().numpy(), rtol=1e-6)


def test_clipping_and_unknown_optimizer():
    params = {"w": {"kernel": jnp.zeros((4,))}}
    tx = build_optimizer(_optim(name="sgd", momentum=0.0, weight_decay=0.0, clip_grad_norm=1.0), params,
                         lr_schedule(1.0, 10, schedule="constant"))
    updates, _ = tx.update({"w": {"kernel": jnp.full((4,), 10.0)}}, tx.init(params), params)
    assert float(jnp.linalg.norm(updates["w"]["kernel"])) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match="optim.name"):
        build_optimizer(_optim(name="lamb"), params, lr_schedule(1.0, 10))
