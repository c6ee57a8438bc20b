"""Evaluation pipeline: methods x test split -> AD/IC, ROAD, (insertion/deletion) report.

``evaluate(checkpoint_dir, config=None, workdir=None)`` runs it with the settings of
``config.eval`` (what ``ttame evaluate`` / ``evaluate.py`` call); see docs/evaluation.md.
Modules: ``methods`` (uniform explanation-method adapter), ``inputs`` (data split and
config checks), ``scoring`` (per-image metric terms), ``cache`` (per-batch results on
disk), ``evaluator`` (the loop),
``report`` (Markdown, JSON, ROAD plot).
"""

from ttame_jax.evaluation.evaluator import evaluate
from ttame_jax.evaluation.methods import Method, available

__all__ = ["Method", "available", "evaluate"]
