"""Checks a training config before anything expensive happens.

``validate(config)`` raises one ``ValueError`` listing every bad value it finds
(so a typo costs seconds, not an hour of training), and builds the schedule-
independent parts that can be checked without data or weights: the backbone
spec, the T-TAME model config (taps, variant) and the loss config.
"""

from __future__ import annotations

import numbers

import ml_collections

SECTIONS = ("backbone", "model", "loss", "data", "train")

# train.<field>: (lower bound, inclusive?) for numbers that must be positive / non-negative.
_INT_FIELDS = {
    "batch_size": 1,
    "epochs": 1,
    "steps_per_epoch": 0,
    "log_every": 1,
    "checkpoint_every": 1,
    "keep_checkpoints": 1,
    "val_steps": 0,
    "halt_after_steps": 0,
}
_POSITIVE_FLOATS = ("max_lr", "div_factor", "final_div_factor")


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _train_errors(t) -> list[str]:
    errors = []
    for name, low in _INT_FIELDS.items():
        v = t.get(name)
        if not _is_int(v) or v < low:
            errors.append(f"train.{name} must be an integer >= {low}, got {v!r}")
    for name in _POSITIVE_FLOATS:
        v = t.get(name)
        if not isinstance(v, numbers.Real) or not v > 0:
            errors.append(f"train.{name} must be > 0, got {v!r}")
    if not 0.0 <= t.get("pct_start", -1) <= 1.0:
        errors.append(f"train.pct_start must lie in [0, 1], got {t.get('pct_start')!r}")
    base, top = t.get("base_momentum"), t.get("max_momentum")
    if not (isinstance(base, numbers.Real) and isinstance(top, numbers.Real)) or not (
        0.0 <= base <= top < 1.0
    ):
        errors.append(
            "train.base_momentum / max_momentum must satisfy 0 <= base <= max < 1, "
            f"got {base!r} / {top!r}"
        )
    wd = t.get("weight_decay")
    if not isinstance(wd, numbers.Real) or wd < 0:
        errors.append(f"train.weight_decay must be >= 0, got {wd!r}")
    adic = t.get("val_adic_percent")
    if not isinstance(adic, numbers.Real) or not 0.0 <= adic < 1.0:
        errors.append(f"train.val_adic_percent must lie in [0, 1), got {adic!r}")
    return errors


def validate(config: ml_collections.ConfigDict):
    """Checks ``config`` and returns ``(spec, model)`` for its backbone.

    Args:
      config: a training config (see ``configs/common.py``).

    Returns:
      ``(BackboneSpec, TTAME)``: the backbone spec and the static T-TAME model.

    Raises:
      ValueError: listing every invalid field and how to fix it.
    """
    from ttame_jax.backbones import get_spec
    from ttame_jax.core.config import LossConfig
    from ttame_jax.core.model import build
    from ttame_jax.data import NAMES as DATA_NAMES

    missing = [s for s in SECTIONS if s not in config]
    if missing:
        raise ValueError(
            f"config has no section(s) {missing}; start from configs/common.py get_base_config"
        )
    errors = _train_errors(config.train)
    if config.data.get("name") not in DATA_NAMES:
        errors.append(f"data.name must be one of {DATA_NAMES}, got {config.data.get('name')!r}")
    spec = model = None
    try:
        spec = get_spec(config.backbone.name)
    except ValueError as err:
        errors.append(f"backbone.name: {err}")
    if spec is not None:
        try:
            model = build(spec, config.model)
        except (ValueError, TypeError) as err:
            errors.append(f"model: {err}")
    try:
        LossConfig.from_config(config.loss)
    except (ValueError, TypeError) as err:
        errors.append(f"loss: {err}")
    if errors:
        raise ValueError("invalid config:\n  - " + "\n  - ".join(errors))
    return spec, model
