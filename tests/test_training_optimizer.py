"""OneCycle schedule and SGD against torch's OneCycleLR and optim.SGD on the same numbers."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from ttame_jax.training.optimizer import current_hyperparams, decay_mask, make_optimizer
from ttame_jax.training.schedule import OneCycle


def _torch_onecycle(params, sched: OneCycle, weight_decay=0.0):
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    lrs = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=sched.max_lr,
        total_steps=sched.total_steps,
        pct_start=sched.pct_start,
        anneal_strategy="cos",
        div_factor=sched.div_factor,
        final_div_factor=sched.final_div_factor,
        base_momentum=sched.base_momentum,
        max_momentum=sched.max_momentum,
        three_phase=False,
    )
    return opt, lrs


@pytest.mark.parametrize(
    "total,pct,max_lr", [(100, 0.3, 1e-3), (7, 0.3, 1e-3), (10, 0.25, 0.05), (3, 0.3, 1e-3)]
)
def test_onecycle_matches_torch(total, pct, max_lr):
    sched = OneCycle(total_steps=total, max_lr=max_lr, pct_start=pct)
    opt, lrs = _torch_onecycle([torch.nn.Parameter(torch.zeros(1))], sched)
    want_lr, want_mom = [], []
    for _ in range(total):
        want_lr.append(opt.param_groups[0]["lr"])
        want_mom.append(opt.param_groups[0]["momentum"])
        opt.step()
        lrs.step()
    steps = jnp.arange(total)
    # float32 cosine: absolute error ~1e-8 of max_lr near the end, where lr -> max_lr / 2.5e5.
    np.testing.assert_allclose(sched.learning_rate(steps), want_lr, rtol=2e-6, atol=max_lr * 1e-7)
    np.testing.assert_allclose(sched.momentum(steps), want_mom, rtol=2e-6)


def test_onecycle_endpoints_by_hand():
    # total 11, pct 0.3 -> peak at e1 = 2.3; initial 1e-3/25, min initial/1e4.
    s = OneCycle(total_steps=11, max_lr=1e-3)
    assert float(s.learning_rate(0)) == pytest.approx(4e-5)
    assert float(s.momentum(0)) == pytest.approx(0.95)
    assert float(s.learning_rate(10)) == pytest.approx(4e-9)
    assert float(s.momentum(10)) == pytest.approx(0.95)
    # Step 2 is 2/2.3 of the way up: cosine between 4e-5 and 1e-3.
    p = 2 / 2.3
    want = 1e-3 + (4e-5 - 1e-3) / 2 * (np.cos(np.pi * p) + 1)
    assert float(s.learning_rate(2)) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(total_steps=0), "positive integer"),
        (dict(total_steps=10, pct_start=1.5), "pct_start"),
        (dict(total_steps=10, pct_start=0.1), "phase boundary"),
        (dict(total_steps=10, max_lr=0.0), "max_lr"),
        (dict(total_steps=10, base_momentum=0.99), "momentum"),
    ],
)
def test_onecycle_rejects_bad_values(kw, match):
    kw = {"max_lr": 1e-3, **kw}
    with pytest.raises(ValueError, match=match):
        OneCycle(**kw)


def test_decay_mask_excludes_biases_only():
    params = {
        "branch_0": {"conv": {"kernel": 1.0, "bias": 2.0}, "bn": {"scale": 3.0, "bias": 4.0}},
        "fuse": {"kernel": 5.0, "bias": 6.0},
    }
    mask = decay_mask(params)
    assert mask == {
        "branch_0": {"conv": {"kernel": True, "bias": False}, "bn": {"scale": True, "bias": False}},
        "fuse": {"kernel": True, "bias": False},
    }


def test_sgd_steps_match_torch():
    """Five steps of our optimizer equal torch SGD(nesterov, wd on weights) + OneCycleLR."""
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3, 4)).astype(np.float32)
    b0 = rng.normal(size=(4,)).astype(np.float32)
    grads = [
        (rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(4,)).astype(np.float32))
        for _ in range(5)
    ]
    sched = OneCycle(total_steps=8, max_lr=0.5)  # large lr so the updates are visible
    wd = 5e-4 * 100  # large decay so a masking mistake is visible

    tw, tb = torch.nn.Parameter(torch.tensor(w0)), torch.nn.Parameter(torch.tensor(b0))
    opt = torch.optim.SGD(
        [{"params": [tb], "weight_decay": 0.0}, {"params": [tw], "weight_decay": wd}],
        lr=0.1,
        momentum=0.9,
        nesterov=True,
    )
    lrs = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=sched.max_lr, total_steps=8)
    for gw, gb in grads:
        tw.grad, tb.grad = torch.tensor(gw), torch.tensor(gb)
        opt.step()
        lrs.step()

    tx = make_optimizer(sched, weight_decay=wd, nesterov=True)
    params = {"dense": {"kernel": jnp.asarray(w0), "bias": jnp.asarray(b0)}}
    state = tx.init(params)
    seen_lr = []
    for gw, gb in grads:
        g = {"dense": {"kernel": jnp.asarray(gw), "bias": jnp.asarray(gb)}}
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
        seen_lr.append(float(current_hyperparams(state)["lr"]))

    np.testing.assert_allclose(params["dense"]["kernel"], tw.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(params["dense"]["bias"], tb.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(seen_lr, sched.learning_rate(jnp.arange(5)), rtol=1e-6)
