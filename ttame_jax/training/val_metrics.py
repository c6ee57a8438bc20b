"""Per-epoch validation: loss terms on the val split, and AD/IC (the paper's model selection).

The loss terms are averaged over examples (batch sums / count, see
``make_eval_step``). ``TTAME.loss_fn`` runs the attention BatchNorm in training
mode, so the val loss normalises each val batch with its own statistics (the
running statistics are used by ``explain`` and by AD/IC).

AD/IC at ``train.val_adic_percent`` of the pixels kept (15 % in the paper) come
from :func:`ttame_jax.metrics.ad_ic` on the explanations of ``explain``.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from ttame_jax import xla_cpu
from ttame_jax.training import device_loop, sharding


def val_batches(source, batch_size: int, max_batches: int):
    """Un-shuffled, un-augmented val batches; at most ``max_batches`` (0: all).

    The last, smaller batch is dropped so that every batch splits over the devices.
    """
    it = source.batches(batch_size, epoch=0, shuffle=False, augment=False, drop_remainder=True)
    return itertools.islice(it, max_batches or None)


def validation_loss(state, backbone_vars, batches, *, eval_step, mesh) -> dict[str, float]:
    """Mean loss and loss terms over ``batches`` (dicts with "image" (B, S, S, 3) in [0, 1])."""
    outs, rows = [], None
    for i, batch in enumerate(batches):
        rows = rows or sharding.process_slice(batch["image"].shape[0])
        images = sharding.shard_batch(batch["image"][rows], mesh)
        outs.append(eval_step(state, backbone_vars, images, i))  # stays on the device
        if len(outs) > device_loop.MAX_IN_FLIGHT:  # bounded run-ahead, no transfer
            jax.block_until_ready(outs[-device_loop.MAX_IN_FLIGHT - 1])
    sums: dict[str, float] = {}
    for out in jax.device_get(outs):  # one transfer after the last batch
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v)
    if not sums:
        raise ValueError(
            "the val split has fewer examples than one batch; lower train.batch_size or "
            "use a larger val split (data.val_size)"
        )
    count = sums.pop("count")
    return {k: v / count for k, v in sums.items()}


@functools.partial(xla_cpu.jit, static_argnames="kept")
def _adic_terms(explainer, images, kept: tuple[float, ...]):
    """Per-image AD/IC terms of one batch: ``drop`` and ``increase``, each (B, len(kept))."""
    from ttame_jax.core.explainer import explain
    from ttame_jax.metrics import ad_ic

    spec = explainer.spec
    out = explain(explainer, images)

    def apply_fn(xn):
        return spec.builder().apply(explainer.backbone_vars, xn)

    terms = ad_ic(apply_fn, images, out.maps, out.target, mean=spec.mean, std=spec.std, kept=kept)
    return terms["drop"], terms["increase"]


def adic(explainer, batches, kept_fraction: float) -> dict[str, float]:
    """AD and IC (%) of ``explainer`` over ``batches`` with ``kept_fraction`` of the pixels kept.

    Args:
      explainer: a :class:`~ttame_jax.core.explainer.Explainer` (current attention weights).
      batches: dicts with "image" (B, S, S, 3) in [0, 1].
      kept_fraction: share of the pixels kept by the map threshold (0.15 in the paper).

    Returns:
      ``{"AD": ..., "IC": ...}`` in percent (``{}`` for no batches).
    """
    from ttame_jax.metrics import ad_ic_summary

    kept = (float(kept_fraction),)
    drops, increases = [], []
    for batch in batches:
        drop, inc = jax.device_get(_adic_terms(explainer, jnp.asarray(batch["image"]), kept))
        drops.append(drop)
        increases.append(inc)
    if not drops:
        return {}
    summary = ad_ic_summary(
        {"drop": np.concatenate(drops), "increase": np.concatenate(increases)}, kept
    )
    (name,) = summary["AD"]
    return {"AD": summary["AD"][name], "IC": summary["IC"][name]}
