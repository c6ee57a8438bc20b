"""The synthetic ground-truth benchmark (issue 6): train backbones, T-TAME, compare methods.

``run_benchmark(config, workdir)`` (``configs/synthetic.py``; what ``python train.py
--workdir=DIR`` runs) — see :mod:`ttame_jax.benchmark.pipeline` and docs/benchmark.md.
Modules: ``localization`` (pointing game, mass inside the evidence, counterfactual
check), ``samples`` (maps on chosen images, figures), ``report`` (report.md/json).
"""

from ttame_jax.benchmark.pipeline import run_benchmark

__all__ = ["run_benchmark"]
