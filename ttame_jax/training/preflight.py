"""Start-up checks of a training config, before anything expensive happens.

``validate(config)`` raises one ``ValueError`` listing every bad value (so a typo costs
seconds, not an hour of training): the schema's own checks
(:meth:`ttame_jax.config.Config.errors`) plus those that need the backbone registry
(the backbone name, the tap names). It returns the parts that can be built without data
or weights: the backbone spec and the static T-TAME model.
"""

from __future__ import annotations

from ttame_jax.config import Config, raise_errors


def validate(config: Config):
    """Checks ``config`` and returns ``(spec, model)`` for its backbone.

    Returns:
      ``(BackboneSpec, TTAME)``: the backbone spec and the static T-TAME model.

    Raises:
      ValueError: listing every invalid field and how to fix it.
    """
    from ttame_jax.backbones import get_spec
    from ttame_jax.core.model import build

    if not isinstance(config, Config):
        raise TypeError(
            f"expected a ttame_jax.config.Config, got {type(config).__name__}; build one with "
            "ttame_jax.configs.load(NAME) or ttame_jax.config.from_dict(...)"
        )
    errors = list(config.errors())
    spec = model = None
    try:
        spec = get_spec(config.backbone.name)
    except ValueError as err:
        errors.append(f"backbone.name: {err}")
    if spec is not None and not config.model.errors():
        try:
            model = build(spec, config.model)
        except ValueError as err:
            errors.append(f"model: {err}")
    raise_errors(errors)
    return spec, model
