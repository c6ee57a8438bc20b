"""The synthetic ground-truth benchmark (issue 6): train backbones, T-TAME, compare methods.

``run_benchmark(config, workdir)`` (the packaged ``synthetic`` config; what ``ttame train
--workdir=DIR`` runs) — see :mod:`ttame_jax.benchmark.pipeline` and docs/benchmark.md.
Modules: ``backbones`` (get or train a benchmark backbone), ``localization`` (pointing
game, mass inside the evidence, counterfactual check), ``samples`` (maps on chosen
images, figures), ``report`` (report.md/json).
"""

from ttame_jax.benchmark.pipeline import run_benchmark

__all__ = ["run_benchmark"]
