"""ttame-jax: T-TAME explanations for CNN and ViT classifiers in JAX/Flax.

Typical use::

    import ttame_jax
    params = ttame_jax.load("runs/demo/checkpoints")
    out = ttame_jax.explain(params, images)   # images in [0, 1], NHWC
    out.maps, out.logits, out.target
"""

import importlib

__version__ = "0.1.0"

# Public names resolved lazily, so `import ttame_jax` stays cheap.
_LAZY = {
    "explain": "ttame_jax.core.explainer",
    "load": "ttame_jax.core.explainer",
    "Explainer": "ttame_jax.core.explainer",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ttame_jax' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
