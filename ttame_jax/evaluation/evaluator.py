"""Runs explanation methods over the fixed test split and scores them (DESIGN §5).

For each method and each batch of the test split (unshuffled, centre-cropped):
target = the backbone's top-1 on the unmasked image; maps = the method's
explanations of it (timed); then the per-image terms of AD/IC (100/50/15 % kept),
ROAD MoRF/LeRF (10-90 % removed; accuracy and target probability), optionally
insertion/deletion AUC and any extra per-batch metrics. Each batch's per-image
arrays are cached on disk (:mod:`ttame_jax.evaluation.cache`) before the next
batch starts, so a rerun after an interruption computes only the missing batches.
Every reported number is a mean of per-image terms over the images.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging

from ttame_jax import rundir
from ttame_jax.config import Config, from_dict
from ttame_jax.data.source import DataSource
from ttame_jax.evaluation import inputs, scoring
from ttame_jax.evaluation.cache import BatchCache
from ttame_jax.evaluation.methods import (
    Method,
    build_methods,
    cam_backbone,
    check_names,
    method_options,
    top1,
)
from ttame_jax.progress import progress_bar

# extra_metrics: name -> fn(maps (B, S, S) np.float32, batch dict of np arrays) -> (B,) values
# (NaN = not applicable to that image; the report shows the mean over the others).
ExtraMetric = Callable[[np.ndarray, Mapping[str, np.ndarray]], np.ndarray]
CACHE_VERSION = 1  # bump when the cached arrays change meaning


def _batches(source: DataSource, batch_size: int, first: int, num_images: int):
    """``(index, batch)`` from batch ``first`` on, the last one cut to ``num_images``."""
    it = source.batches(batch_size, shuffle=False, augment=False, start=first)
    for i, batch in enumerate(it, start=first):
        keep = min(batch_size, num_images - i * batch_size)
        yield i, {k: v[:keep] for k, v in batch.items()}
        if (i + 1) * batch_size >= num_images:
            return  # do not ask the loader for a batch beyond num_images


# jax.monitoring events of tracing, lowering and XLA compilation (jax/_src/dispatch.py).
_COMPILE_EVENTS = frozenset(
    "/jax/core/compile/" + e
    for e in ("jaxpr_trace_duration", "jaxpr_to_mlir_module_duration", "backend_compile_duration")
)
_compile_seconds = [0.0]  # running total in this process (all threads)


def _on_jax_event(event: str, duration: float, **_) -> None:
    if event in _COMPILE_EVENTS:
        _compile_seconds[0] += duration


class _Timer:
    """Seconds of ``fn(x, target)`` with the result on the host, without compilation.

    The first call per shape compiles: the tracing, lowering and compile time that JAX
    reports during it (``jax.monitoring``) is subtracted instead of running the
    explanation twice (a Score-CAM or RISE batch costs thousands of forward passes).
    """

    _listening = False

    def __init__(self):
        if not _Timer._listening:
            jax.monitoring.register_event_duration_secs_listener(_on_jax_event)
            _Timer._listening = True

    def __call__(self, method: Method, x, target):
        compiled, start = _compile_seconds[0], time.perf_counter()
        maps = jax.block_until_ready(method.fn(x, target))
        seconds = time.perf_counter() - start - (_compile_seconds[0] - compiled)
        return np.asarray(maps, np.float32), max(seconds, 0.0)


def _check_maps(method: Method, maps: np.ndarray, x: np.ndarray) -> None:
    if maps.shape != x.shape[:3]:
        raise ValueError(
            f"method {method.name!r} returned maps of shape {maps.shape}, expected {x.shape[:3]}"
        )
    if not np.all(np.isfinite(maps)):
        raise FloatingPointError(f"method {method.name!r} returned non-finite map values")


def _score(method, batch, explainer, ctx, extra_metrics, timer) -> dict[str, np.ndarray]:
    x = np.asarray(batch["image"], np.float32)
    target = top1(explainer, x)
    maps, seconds = timer(method, x, target)
    _check_maps(method, maps, x)
    arrays = scoring.score_batch(ctx, x, maps, target, batch["index"])
    for name, fn in extra_metrics.items():
        values = np.asarray(fn(maps, batch), np.float64)
        if values.shape != (len(x),):
            raise ValueError(f"extra metric {name!r} must return ({len(x)},), got {values.shape}")
        arrays[f"extra.{name}"] = values
    arrays.update(index=np.asarray(batch["index"]), target=target, seconds=np.float64(seconds))
    return arrays


def run_method(method, source, explainer, ctx, cache, *, batch_size, num_images, extra, progress):
    """Fills ``cache`` with every batch of ``method``; returns the batches' arrays in order."""
    num_batches = math.ceil(num_images / batch_size)
    missing = [i for i in range(num_batches) if not cache.has(i)]
    if missing:
        logging.info("%s: %d of %d batches to compute", method.name, len(missing), num_batches)
        timer, todo = _Timer(), set(missing)
        bar = progress_bar(total=num_batches, initial=num_batches - len(missing), desc=method.name,
                   unit="batch", disable=not progress)  # fmt: skip
        with bar:
            for i, batch in _batches(source, batch_size, missing[0], num_images):
                if i in todo:
                    cache.save(i, _score(method, batch, explainer, ctx, extra, timer))
                    bar.update()
    rows = [cache.load(i) for i in range(num_batches)]
    if any(r is None for r in rows):
        raise RuntimeError(
            f"{method.name}: the data ended after {rows.index(None)} of {num_batches} batches "
            f"(were unreadable images skipped? see the loader's log); the finished batches are "
            f"cached in {cache.folder}"
        )
    return rows


def report_settings(common_key: Mapping, split: str, methods: Sequence[Method]) -> dict:
    """The settings that change a report's numbers; they name its folder.

    The cache key shared by all methods plus the split and, in order, every method's
    name and options: the same settings find the same folder (and the cached batches).
    """
    described = [{"name": m.name, "options": dict(m.options)} for m in methods]
    return {**common_key, "split": split, "methods": described}


def evaluate(
    checkpoint_dir: str,
    config: Config | None = None,
    *,
    workdir: str | None = None,
    methods: Sequence[str | Method] | None = None,
    extra_metrics: Mapping[str, ExtraMetric] | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """Evaluates a T-TAME checkpoint (and baselines on its backbone); writes the report.

    What is scored and how comes from ``config.eval`` (:class:`ttame_jax.config.EvalConfig`:
    methods, step, split, number of images, batch size, ROAD rule, insertion/deletion,
    RISE masks, baseline layer); the images from ``config.data``.

    Args:
      checkpoint_dir: a ``train.py`` workdir (or any path inside it).
      config: the config (``None``: the checkpoint's own ``config.json``); its backbone
        and taps must be the checkpoint's. A mapping or ConfigDict is converted.
      workdir: output folder for the reports, their index and the cache; default
        ``<checkpoint>/eval``. The report goes into ``workdir/<split>-<n>img-<hash>/``,
        named after the settings (:func:`report_settings`), so evaluations with other
        settings never replace it; ``workdir/index.json`` and ``index.md`` list them all.
      methods: overrides ``config.eval.methods``; may hold ready
        :class:`~ttame_jax.evaluation.methods.Method` objects (custom methods).
      extra_metrics: ``{name: fn(maps, batch) -> (B,)}`` per-image values (NaN = skip).
      write: write the report files and update the index (atomically, only after
        success).

    Returns:
      the results dict (see :func:`ttame_jax.evaluation.report.summarise`); its ``meta``
      has ``settings``, ``report_dir`` (where the report goes) and, when written,
      ``files`` (``{"results.json" | "report.md" | "road_curves.png": path}``).
    """
    from ttame_jax.backbones import get_spec
    from ttame_jax.core.explainer import load_run
    from ttame_jax.evaluation import report

    train_dir = rundir.find(checkpoint_dir)
    saved = rundir.read_config(train_dir)
    config = saved if config is None else from_dict(config)
    ec = config.eval
    methods = list(ec.methods if methods is None else methods)
    check_names(methods)
    rundir.pick_step(train_dir, ec.step)  # no checkpoint / unknown step: before any work
    extra = dict(extra_metrics or {})
    inputs.check_same_model(config, saved)
    source = inputs.open_split(config, ec.split, get_spec(saved.backbone.name).input_size)
    total = len(source) if ec.num_images is None else min(ec.num_images, len(source))

    # The given step, or the newest that restores (a damaged newer one is warned about).
    explainer, _, _, step = load_run(train_dir, ec.step)
    cam = cam_backbone(explainer, ec, methods)  # None unless eval.cam_backbone is used
    resolved = build_methods(methods, explainer, method_options(ec, methods), cam=cam)
    ctx = scoring.Context.from_eval(explainer, ec)
    workdir = workdir or f"{train_dir}/eval"
    common_key = {  # what every method's numbers depend on (its cache key has more)
        "version": CACHE_VERSION,
        "checkpoint": train_dir,
        "step": step,
        "run": rundir.fingerprint(train_dir, step),
        "data": inputs.split_fingerprint(config, ec.split, source),
        "num_images": total,
        "batch_size": ec.batch_size,
        "scoring": ctx.key(),
        "extra_metrics": sorted(extra),
    }
    per_method = {}
    for method in resolved:
        # The classifier that gives the target and scores the maps: the checkpoint's, or
        # eval.cam_backbone for the CAM baselines (named in their options, so their key).
        scored_on = method.backbone or explainer
        mctx = ctx if method.backbone is None else scoring.Context.from_eval(scored_on, ec)
        mctx = mctx.for_method(method.name)  # its own ROAD space, so its own scoring key
        key = {**common_key, "scoring": mctx.key(), "method": method.name,
               "options": dict(method.options)}  # fmt: skip
        cache = BatchCache(f"{workdir}/cache", method.name, key)
        rows = run_method(
            method, source, scored_on, mctx, cache,
            batch_size=ec.batch_size, num_images=total, extra=extra, progress=ec.progress,
        )  # fmt: skip
        per_method[method.name] = (method, rows)
    meta = {
        "checkpoint": train_dir,
        "workdir": workdir,
        "step": step,
        "backbone": saved.backbone.name,
        "baseline_layer": next(
            (m.options.get("layer") for m in resolved if "layer" in m.options), None
        ),
        "split": ec.split,
        "num_images": total,
        "batch_size": ec.batch_size,
        "road_compat": ec.road_compat,
        "insertion_deletion": ec.insertion_deletion,
        "insertion_deletion_steps": ec.insertion_deletion_steps,
    }
    if cam is not None:
        meta["cam_backbone"] = cam.key["name"]
    settings = report_settings(common_key, ec.split, resolved)
    meta["settings"] = settings
    meta["report_dir"] = os.path.join(workdir, report.report_name(settings))
    if write:
        meta["files"] = report.report_files(meta["report_dir"])
    results = report.summarise(per_method, meta)
    if write:
        report.write_report(meta["report_dir"], results)
        report.update_index(workdir)
        logging.info("report written to %s", meta["report_dir"])
    return results
