"""Schedules and the optimizer chain; one and two AdamW steps give the weights PyTorch + timm give.

The parity tests use timm's own optimizer (`create_optimizer_v2`, which excludes 1-D params from
weight decay) against optax.adamw with `weight_decay_mask`, so they also check the mask.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
import timm
import torch
from flax import nnx
from timm.optim import create_optimizer_v2

import convnext_jax as cj
from convnext_jax.train.optim import LearningRate, build_optimizer, scaled_lr
from tests.conftest import nchw_to_nhwc, randomize_


def test_cosine_with_warmup_matches_timm_shape():
    learning_rate = LearningRate(100, schedule="cosine", warmup_steps=10)
    sched = lambda step: float(learning_rate(step, 1e-3, 1e-5))  # noqa: E731
    assert sched(0) == 0.0 and sched(5) == pytest.approx(5e-4)
    assert sched(10) == pytest.approx(1e-3)
    assert sched(55) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5), rel=1e-4)
    assert sched(100) == pytest.approx(1e-5, rel=1e-4)
    lrs = np.array([sched(s) for s in range(10, 101)])
    assert np.all(np.diff(lrs) <= 1e-12)


def test_onecycle_and_constant():
    one = LearningRate(100, schedule="onecycle", warmup_steps=30)
    assert float(one(30, 1e-2)) == pytest.approx(1e-2, rel=1e-3) and float(one(0, 1e-2)) < 1e-3
    assert float(one(100, 1e-2)) < 1e-5
    const = LearningRate(50, schedule="constant", warmup_steps=5)
    assert float(const(2, 3e-4)) < 3e-4 and float(const(40, 3e-4)) == pytest.approx(3e-4)
    with pytest.raises(ValueError, match="schedule"):
        LearningRate(10, schedule="step")


@pytest.mark.parametrize("schedule,warmup", [("cosine", 0), ("cosine", 3), ("onecycle", 2), ("constant", 4)])
def test_the_logged_lr_is_the_lr_the_optimizer_applied(schedule, warmup):
    """SGD without momentum or weight decay moves a weight by -lr x gradient: the LR each update
    applied, read off the weights, equals the run's schedule (what the logs write) at that step."""
    import ml_collections

    from convnext_jax.train.setup import schedule_of

    config = ml_collections.ConfigDict(
        {
            "num_epochs": 5,
            "optim": {
                "schedule": schedule,
                "warmup_steps": warmup,
                "warmup_epochs": 0,
                "lr": 3e-3,
                "min_lr": 1e-5,
                "lr_scaling": "none",
                "lr_base_batch": 256,
            },
            "batch_size": 64,
        }
    )
    logged = schedule_of(config, steps_per_epoch=4)  # 20 optimizer steps
    from convnext_jax.train.setup import learning_rate_of

    tx = build_optimizer(
        _optim(name="sgd", momentum=0.0, weight_decay=0.0),
        {"w": jnp.zeros(3)},
        learning_rate_of(config, 4),
        peak_lr=3e-3,
        min_lr=1e-5,
    )
    params, gradient = {"w": jnp.zeros(3)}, {"w": jnp.ones(3)}
    state = tx.init(params)
    for step in range(20):
        updates, state = tx.update(gradient, state, params)
        np.testing.assert_allclose(-float(updates["w"][0]), logged(step), rtol=1e-5, atol=1e-10)


def test_lr_scaling_rules():
    assert scaled_lr(4e-3, 4096, rule="linear", base_batch=4096) == pytest.approx(4e-3)
    assert scaled_lr(1e-3, 1024, rule="linear") == pytest.approx(4e-3)
    assert scaled_lr(1e-3, 1024, rule="sqrt") == pytest.approx(2e-3)
    assert scaled_lr(1e-3, 1024, rule="none") == 1e-3
    with pytest.raises(ValueError):
        scaled_lr(1e-3, 64, rule="cubic")


def _optim(**kw):
    base = dict(
        name="adamw",
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        weight_decay=0.05,
        clip_grad_norm=0.0,
        momentum=0.9,
        grad_accum_steps=1,
    )
    base.update(kw)
    return ml_collections.ConfigDict(base)


def test_adamw_with_mask_matches_torch_param_groups():
    params = {"conv": {"kernel": jnp.ones((3, 3)), "bias": jnp.ones((3,))}}
    grads = {"conv": {"kernel": jnp.full((3, 3), 0.5), "bias": jnp.full((3,), -0.5)}}
    tx = build_optimizer(_optim(), params, LearningRate(10, schedule="constant"), peak_lr=0.1)
    updates, _ = tx.update(grads, tx.init(params), params)
    kernel = torch.nn.Parameter(torch.ones(3, 3))
    bias = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW(
        [{"params": [kernel], "weight_decay": 0.05}, {"params": [bias], "weight_decay": 0.0}],
        lr=0.1,
        betas=(0.9, 0.999),
        eps=1e-8,
    )
    kernel.grad, bias.grad = torch.full((3, 3), 0.5), torch.full((3,), -0.5)
    opt.step()
    np.testing.assert_allclose(1 + updates["conv"]["kernel"], kernel.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(1 + updates["conv"]["bias"], bias.detach().numpy(), rtol=1e-6)


def test_clipping_and_unknown_optimizer():
    params = {"w": {"kernel": jnp.zeros((4,))}}
    tx = build_optimizer(
        _optim(name="sgd", momentum=0.0, weight_decay=0.0, clip_grad_norm=1.0),
        params,
        LearningRate(10, schedule="constant"),
        peak_lr=1.0,
    )
    updates, _ = tx.update({"w": {"kernel": jnp.full((4,), 10.0)}}, tx.init(params), params)
    assert float(jnp.linalg.norm(updates["w"]["kernel"])) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match="optim.name"):
        build_optimizer(_optim(name="lamb"), params, LearningRate(10), peak_lr=1.0)


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
    print(
        f"{name}: {diffs.size} weights, max diff {diffs.max():.2e}, "
        f">1e-6: {(diffs > 1e-6).sum()}, >1e-5: {(diffs > 1e-5).sum()}"
    )
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
        return optax.softmax_cross_entropy(
            nnx.merge(graphdef, params, rest)(jnp.asarray(nchw_to_nhwc(x))), labels
        ).mean()

    grads = jax.jit(jax.grad(loss_fn))(params)
    grad_model = nnx.merge(graphdef, grads, rest)  # same structure: export maps it to timm names
    ours = cj.export_pytorch_weights(grad_model)
    for key, param in reference.named_parameters():
        want = param.grad.numpy()
        rel = np.linalg.norm(ours[key] - want) / max(np.linalg.norm(want), 1e-12)
        assert rel < 1e-4, f"{key}: relative gradient error {rel:.2e}"


def test_the_numbers_a_sweep_changes_are_not_compiled_in():
    """Two configs that differ in LR, min LR, weight decay and betas lower to the same step (one
    compilation for all such sweep trials), and the LR reaches the update."""
    import jax

    from configs.common import tiny_study_base
    from convnext_jax.sweep.space import apply_params
    from convnext_jax.train.setup import build
    from convnext_jax.train.steps import make_train_step

    texts, updates = [], []
    for lr, extra in ((3e-3, {}), (1e-3, {"optim.min_lr": 1e-4, "optim.weight_decay": 0.3, "optim.b2": 0.99})):
        s = build(apply_params(tiny_study_base(), {"optim.lr": lr, "num_epochs": 1, "optim.warmup_epochs": 0, **extra}))
        step = make_train_step(s.graphdef, s.rest, s.tx, s.task, layout=s.layout, inputs=s.inputs)
        batch = {"image": np.zeros((1, 64, 32, 32, 3), np.uint8), "label": np.zeros((1, 64), np.int32)}
        lowered = jax.jit(step).lower(s.state, batch, jax.random.key(0))
        texts.append(lowered.as_text())
        new_state, _ = lowered.compile()(s.state, batch, jax.random.key(0))
        first = jax.tree.leaves(s.state.params)[0]
        updates.append(np.abs(np.asarray(jax.tree.leaves(new_state.params)[0]) - np.asarray(first)).max())
    assert texts[0] == texts[1]
    assert updates[0] > 2 * updates[1] > 0  # Adam's first step moves each weight by ~lr
