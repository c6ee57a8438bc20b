"""Feature taps by torchvision node name, via Flax ``capture_intermediates``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax


def tap_paths(module) -> Mapping[str, tuple[str, ...]]:
    """The ``{torchvision node name: Flax module path}`` table of a backbone module."""
    paths = getattr(module, "tap_paths", None)
    if paths is None:
        raise TypeError(
            f"{type(module).__name__} is not a ttame_jax backbone: it has no `tap_paths` table"
        )
    return paths


def resolve_taps(module, layers: Sequence[str]) -> list[tuple[str, ...]]:
    """Maps node names to Flax paths; unknown names raise listing the valid ones."""
    if isinstance(layers, str):
        layers = [layers]
    table = tap_paths(module)
    unknown = [layer for layer in layers if layer not in table]
    if unknown:
        raise ValueError(
            f"unknown tap(s) {unknown} for {type(module).__name__}; valid tap names: "
            f"{', '.join(table)}"
        )
    return [tuple(table[layer]) for layer in layers]


def extract(
    module, variables, x: jax.Array, layers: Sequence[str], *, train: bool = False, rngs=None
):
    """Runs the backbone and returns its logits and the requested feature taps.

    Args:
      module: a backbone from :func:`ttame_jax.backbones.create`.
      variables: its variables (``{"params": ..., "batch_stats": ...}``).
      x: ``(B, H, W, 3)`` float32, normalised with the backbone's mean/std.
      layers: torchvision node names, e.g. ``["layer2", "layer3", "layer4"]``.
      train: run the module with ``train=True`` (torchvision's ``model.train()``: BatchNorm
        on batch statistics, dropout with ``rngs["dropout"]``); the updated running
        statistics are discarded.
      rngs: Flax PRNG keys of a train-mode pass, e.g. ``{"dropout": key}``.

    Returns:
      ``(logits, {name: activation})``; CNN taps are NHWC, ViT taps are token
      sequences ``(B, 1 + N, D)`` exactly as torchvision produces them.
    """
    if isinstance(layers, str):
        layers = [layers]
    paths = resolve_taps(module, layers)
    wanted = set(paths)

    def want(mdl, method_name):
        return method_name == "__call__" and tuple(mdl.path) in wanted

    if train:
        logits, state = module.apply(
            variables,
            x,
            train=True,
            capture_intermediates=want,
            mutable=["intermediates", "batch_stats"],
            rngs=rngs,
        )
    else:
        logits, state = module.apply(
            variables, x, capture_intermediates=want, mutable=["intermediates"]
        )
    inter = state["intermediates"]
    feats = {}
    for layer, path in zip(layers, paths, strict=True):
        node = inter
        for key in path:
            node = node[key]
        # A module called once records a 1-tuple under "__call__".
        feats[layer] = node["__call__"][-1]
    return logits, feats
