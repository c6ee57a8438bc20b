"""Profile of the main job (``python train.py --workdir=DIR``, the synthetic benchmark).

Runs :func:`ttame_jax.benchmark.pipeline.run_benchmark` with the packaged ``synthetic``
config (or a variant) into a fresh folder and prints, per backbone and stage: wall
seconds, CPU seconds of the whole process (all threads, XLA's included; on a shared
machine the CPU seconds are the steadier number), and the XLA compilations in it
(count and wall seconds: tracing + lowering + backend compile; hits = programs loaded
from the persistent cache in ``workdir/xla_cache``), with the functions compiled most
often. Stages are the pipeline's own: backbone, ttame, evaluation, counterfactual.

    python benchmarks/main_job.py [--variant=""|smoke] [--workdir=/tmp/main_job]
        [--set eval.num_images=32 ...]

``--set section.field=value`` overrides config fields (Python literals), e.g. to measure
what a size cut saves before changing the config. Prints the CPU model and load average.
"""

from __future__ import annotations

import argparse
import ast
import collections
import os
import shutil
import time

import jax
from jax._src import dispatch

from ttame_jax.benchmark.report import cpu_model, cpu_seconds

COMPILE_EVENTS = (
    dispatch.JAXPR_TRACE_EVENT,
    dispatch.JAXPR_TO_MLIR_MODULE_EVENT,
    dispatch.BACKEND_COMPILE_EVENT,
)


class Recorder:
    """Wall, CPU and compile totals of the stage being run (``self.stage``)."""

    def __init__(self):
        self.stage = "setup"
        self.rows = collections.defaultdict(lambda: collections.Counter())
        self.compiled = collections.defaultdict(collections.Counter)
        jax.monitoring.register_event_duration_secs_listener(self._on_event)
        jax.monitoring.register_event_listener(self._on_count)

    def _on_count(self, event, **kw):
        if event == "/jax/compilation_cache/cache_hits":  # loaded from workdir/xla_cache
            self.rows[self.stage]["cache_hits"] += 1

    def _on_event(self, event, duration, **kw):
        if event not in COMPILE_EVENTS:
            return
        row = self.rows[self.stage]
        row["compile_s"] += duration
        if event == dispatch.BACKEND_COMPILE_EVENT:
            row["compiles"] += 1
            row["backend_s"] += duration
            self.compiled[self.stage][kw.get("fun_name", "?")] += 1

    def wrap(self, module, name: str, stage: str, backbone_of):
        fn = getattr(module, name)

        def wrapped(*args, **kw):
            previous, self.stage = self.stage, f"{backbone_of(args)}/{stage}"
            wall, cpu = time.perf_counter(), cpu_seconds()
            try:
                return fn(*args, **kw)
            finally:
                row = self.rows[self.stage]
                row["wall_s"] += time.perf_counter() - wall
                row["cpu_s"] += cpu_seconds() - cpu
                row["calls"] += 1
                self.stage = previous

        setattr(module, name, wrapped)


def _parse_sets(items):
    out = {}
    for item in items or ():
        key, _, value = item.partition("=")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variant", default="")
    p.add_argument("--workdir", default="/tmp/main_job_profile")
    p.add_argument("--keep", action="store_true", help="reuse the workdir (resume) ")
    p.add_argument("--set", action="append", help="section.field=value override")
    p.add_argument("--top", type=int, default=6, help="most compiled functions per stage")
    args = p.parse_args()

    from ttame_jax.benchmark import pipeline
    from ttame_jax.config import from_dict
    from ttame_jax.configs import synthetic

    rec = Recorder()
    rec.wrap(pipeline, "get_or_train", "backbone", lambda a: a[1])
    rec.wrap(pipeline, "train_ttame", "ttame", lambda a: a[0].backbone.name)
    rec.wrap(pipeline, "evaluate_methods", "evaluation", lambda a: a[0].backbone.name)
    rec.wrap(pipeline, "counterfactual_and_figures", "counterfactual", lambda a: a[0].backbone.name)

    cfg = synthetic.get_config(args.variant)
    for key, value in _parse_sets(args.set).items():
        section, field = key.split(".", 1)
        getattr(cfg, section)[field] = value
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = pipeline.run_benchmark(from_dict(cfg), args.workdir)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu

    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"\nCPU: {cpu_model()}, {os.cpu_count()} cores; load average {load}; {when}")
    print(f"total: {wall:.0f} s wall, {cpu:.0f} CPU-s")
    head = f"{'stage':34s} {'wall s':>7s} {'CPU s':>7s} {'compiles':>8s} {'compile s':>9s} hits"
    print(head + "\n" + "-" * len(head))
    for stage, row in rec.rows.items():
        print(f"{stage:34s} {row['wall_s']:7.1f} {row['cpu_s']:7.1f} {row['compiles']:8d} "
              f"{row['compile_s']:9.1f} {row['cache_hits']:4d}")  # fmt: skip
    for stage, counts in rec.compiled.items():
        top = ", ".join(f"{n}×{c}" for n, c in counts.most_common(args.top))
        print(f"  {stage}: {top}")
    keys = ("ad_15", "road_morf", "road_lerf", "insertion_auc", "deletion_auc",
            "pointing_game", "mass_inside", "counterfactual")  # fmt: skip
    for name, b in result["backbones"].items():
        print(f"\n{name}: test accuracy {b['test_accuracy']:.4f}; " + " ".join(keys))
        for method, row in b["rows"].items():
            print(f"  {method:12s} " + " ".join(f"{row[k]:.4g}" for k in keys))
        for seed, row in b["ttame_per_seed"].items():
            print(f"  ttame seed {seed:2s} " + " ".join(f"{row[k]:.4g}" for k in keys))


if __name__ == "__main__":
    main()
