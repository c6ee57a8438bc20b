"""Evaluation pipeline: methods x test split -> AD/IC, ROAD, (insertion/deletion) report.

``evaluate(config, checkpoint_dir, workdir, methods=...)`` runs it (what ``evaluate.py``
calls); see docs/evaluation.md. Modules: ``methods`` (uniform explanation-method
adapter), ``inputs`` (checkpoint and data checks), ``scoring`` (per-image metric
terms), ``cache`` (per-batch results on disk), ``evaluator`` (the loop),
``report`` (Markdown, JSON, ROAD plot).
"""

from ttame_jax.evaluation.evaluator import evaluate
from ttame_jax.evaluation.methods import Method, available

__all__ = ["Method", "available", "evaluate"]
