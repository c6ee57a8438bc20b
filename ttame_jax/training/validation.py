"""Per-epoch validation: loss terms on the val split, and AD/IC (the paper's model selection).

The loss terms are averaged over examples (batch sums / count, see
``make_eval_step``). ``TTAME.loss_fn`` runs the attention BatchNorm in training
mode, so the val loss normalises each val batch with its own statistics (the
running statistics are used by ``explain`` and by AD/IC).

AD/IC at ``train.val_adic_percent`` (15 % in the paper) is computed with
:mod:`ttame_jax.metrics` when that package provides ``ad_ic``; otherwise the
hook :func:`adic_hook` returns nothing and the log says so.
"""

from __future__ import annotations

import itertools
import logging

import jax
import numpy as np

from ttame_jax.training import sharding

log = logging.getLogger(__name__)


def val_batches(source, batch_size: int, max_batches: int):
    """Un-shuffled, un-augmented val batches; at most ``max_batches`` (0: all).

    The last, smaller batch is dropped so that every batch splits over the devices.
    """
    it = source.batches(batch_size, epoch=0, shuffle=False, augment=False, drop_remainder=True)
    return itertools.islice(it, max_batches or None)


def validation_loss(state, backbone_vars, batches, *, eval_step, mesh) -> dict[str, float]:
    """Mean loss and loss terms over ``batches`` (dicts with "image" (B, S, S, 3) in [0, 1])."""
    sums: dict[str, float] = {}
    rows = None
    for i, batch in enumerate(batches):
        rows = rows or sharding.process_slice(batch["image"].shape[0])
        images = sharding.shard_batch(batch["image"][rows], mesh)
        out = jax.device_get(eval_step(state, backbone_vars, images, i))
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v)
    if not sums:
        raise ValueError(
            "the val split has fewer examples than one batch; lower train.batch_size or "
            "use a larger val split (data.val_size)"
        )
    count = sums.pop("count")
    return {k: v / count for k, v in sums.items()}


def adic_hook(explainer, batches, percent: float) -> dict[str, float]:
    """AD/IC (%) of ``explainer`` on ``batches`` at ``percent`` kept pixels, if available.

    HOOK: the metrics package (``ttame_jax.metrics``) computes AD/IC; until it
    exposes ``ad_ic``, this returns ``{}``.
    """
    import ttame_jax.metrics as metrics

    ad_ic = getattr(metrics, "ad_ic", None)
    if ad_ic is None or percent <= 0:
        if percent > 0:
            log.info("ttame_jax.metrics.ad_ic not available yet: skipping AD/IC validation")
        return {}
    from ttame_jax.core.explainer import explain

    spec = explainer.spec
    mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)

    def apply_fn(xn):
        return spec.builder().apply(explainer.backbone_vars, xn)

    ads, ics = [], []
    for batch in batches:
        x = batch["image"]
        out = explain(explainer, x)
        ad, ic = ad_ic(apply_fn, x, out.maps, mean, std, percent=percent, target=out.target)
        ads.append(np.asarray(ad))
        ics.append(np.asarray(ic))
    if not ads:
        return {}
    return {"AD": float(np.mean(ads)), "IC": float(np.mean(ics))}
