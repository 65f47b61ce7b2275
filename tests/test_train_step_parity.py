"""One (and two) AdamW steps on the same batch give the same weights as PyTorch + timm.

The optimizer is timm's own (`create_optimizer_v2`, which excludes 1-D params from weight
decay), the JAX side is optax.adamw with `weight_decay_mask` — so this also checks the mask.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import timm
import torch
from flax import nnx
from timm.optim import create_optimizer_v2

import convnext_jax as cj
from tests.conftest import nchw_to_nhwc, randomize_

LR, WD, STEPS = 1e-3, 0.05, 2


def _torch_steps(model, x, y):
    opt = create_optimizer_v2(model, "adamw", lr=LR, weight_decay=WD, betas=(0.9, 0.999), eps=1e-8)
    model.train()
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _jax_steps(model, x, y):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adamw(LR, b1=0.9, b2=0.999, eps=1e-8, weight_decay=WD, mask=cj.weight_decay_mask(params))
    opt_state = tx.init(params)
    labels = optax.smooth_labels(jax.nn.one_hot(y, model.cfg.num_classes), 0.1)

    @jax.jit
    def step(params, opt_state):
        def loss_fn(params):
            logits = nnx.merge(graphdef, params, rest)(x, train=True)
            return optax.softmax_cross_entropy(logits, labels).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for _ in range(STEPS):
        params, opt_state, loss = step(params, opt_state)
        losses.append(float(loss))
    nnx.update(model, params)
    return losses


def _same_models_and_batch(name, seed):
    """A randomised timm model, the Flax model holding the same weights, and a batch (NCHW, labels)."""
    reference = randomize_(timm.create_model(name, num_classes=10), seed=seed)
    model = cj.create_model(name, num_classes=10)
    cj.load_pytorch_weights(model, reference.state_dict())
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 3, 32, 32, generator=gen)
    return reference, model, x, torch.randint(0, 10, (8,), generator=gen)


@pytest.mark.parametrize("name", ["convnext_atto", "convnextv2_atto"])
def test_adamw_steps_match_pytorch(name):
    reference, model, x, y = _same_models_and_batch(name, seed=11)
    torch_losses = _torch_steps(reference, x, y)
    jax_losses = _jax_steps(model, jnp.asarray(nchw_to_nhwc(x)), jnp.asarray(y.numpy()))
    np.testing.assert_allclose(jax_losses, torch_losses, rtol=1e-5)
    ours = cj.export_pytorch_weights(model)
    diffs = np.concatenate([np.abs(ours[k] - v.numpy()).ravel() for k, v in reference.state_dict().items()])
    print(f"{name}: {diffs.size} weights, max diff {diffs.max():.2e}, "
          f">1e-6: {(diffs > 1e-6).sum()}, >1e-5: {(diffs > 1e-5).sum()}")
    # Adam's step is m / (sqrt(v) + eps): where a gradient is at float32 rounding level its
    # direction is noise, so a handful of weights may differ by a fraction of LR; all others agree
    # to float32 precision.
    assert (diffs > 1e-6).mean() < 1e-3
    assert diffs.max() < LR * STEPS


@pytest.mark.parametrize("name", ["convnext_atto", "convnextv2_atto"])
def test_gradients_match_pytorch(name):
    reference, model, x, y = _same_models_and_batch(name, seed=12)
    torch.nn.functional.cross_entropy(reference.train()(x), y).backward()

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    labels = jax.nn.one_hot(jnp.asarray(y.numpy()), 10)

    def loss_fn(params):
        return optax.softmax_cross_entropy(nnx.merge(graphdef, params, rest)(jnp.asarray(nchw_to_nhwc(x))),
                                           labels).mean()

    grads = jax.jit(jax.grad(loss_fn))(params)
    grad_model = nnx.merge(graphdef, grads, rest)  # same structure: export maps it to timm names
    ours = cj.export_pytorch_weights(grad_model)
    for key, param in reference.named_parameters():
        want = param.grad.numpy()
        rel = np.linalg.norm(ours[key] - want) / max(np.linalg.norm(want), 1e-12)
        assert rel < 1e-4, f"{key}: relative gradient error {rel:.2e}"
