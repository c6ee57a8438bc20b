"""Packaged experiment configs, found by name: ``--config=NAME[:variant]``.

========== ===================================================================
name       what
========== ===================================================================
synthetic  the synthetic ground-truth benchmark (the main job; ``:smoke``, ``:test``)
vgg16      T-TAME on VGG-16, the paper's recipe (``:smoke``, ``:1tap``)
resnet50   T-TAME on ResNet-50, the paper's recipe (``:smoke``, ``:1tap``)
vit        T-TAME on ViT-B/16, the paper's recipe (``:smoke``, ``:1tap``)
========== ===================================================================

Each module's ``get_config(arg)`` returns an ``ml_collections.ConfigDict`` holding only
what differs from the schema's defaults (:mod:`ttame_jax.config`); :func:`load` turns it
into a checked, typed :class:`~ttame_jax.config.Config`. A path to a ``.py`` file with
such a ``get_config`` works too (``--config=my_configs/exp.py:variant``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os

from ttame_jax.config import Config, from_dict, with_overrides

NAMES = ("synthetic", "vgg16", "resnet50", "vit")
DEFAULT = "synthetic"


def _module(name: str):
    if name.endswith(".py") or os.sep in name or "/" in name:
        path = os.path.abspath(os.path.expanduser(name))
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"config file {name!r} not found; pass a packaged config name "
                f"({', '.join(NAMES)}) or the path of a .py file with get_config()"
            )
        spec = importlib.util.spec_from_file_location(f"_ttame_config_{abs(hash(path))}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    elif name in NAMES:
        module = importlib.import_module(f"ttame_jax.configs.{name}")
    else:
        raise ValueError(
            f"unknown config {name!r}; packaged configs: {', '.join(NAMES)} "
            "(or the path of a .py file with get_config())"
        )
    if not callable(getattr(module, "get_config", None)):
        raise ValueError(f"config {name!r} has no get_config(arg) function")
    return module


def load(spec: str | None = None, overrides: dict | None = None) -> Config:
    """The config ``NAME[:variant]`` (or ``path.py[:variant]``), with ``overrides``.

    Args:
      spec: e.g. ``"vit:smoke"``, ``"synthetic"`` or ``"configs/vit.py:1tap"``; ``None``
        for :data:`DEFAULT`.
      overrides: ``{"train.epochs": 4, ...}`` (strings are parsed by the field's type).

    Raises:
      ValueError: unknown name or variant, unknown fields, bad values (all listed).
      FileNotFoundError: a config path that does not exist.
    """
    name, _, arg = (spec or DEFAULT).partition(":")
    values = _module(name).get_config(arg or None)
    config = from_dict(values)
    return with_overrides(config, overrides) if overrides else config


__all__ = ["DEFAULT", "NAMES", "load"]
