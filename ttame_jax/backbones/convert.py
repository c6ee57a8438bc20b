"""Converts torchvision / timm checkpoints into Flax variables of our backbones.

Pure NumPy: a checkpoint is read into ``{key: np.ndarray}``, each key is mapped
by a table (:mod:`ttame_jax.backbones.convert_tables`) and the result is
checked against ``jax.eval_shape(module.init)``. Conversion is strict: every
missing, unexpected or mis-shaped entry is collected and reported in one
``ValueError``. torchvision's ``num_batches_tracked`` counters are ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from ttame_jax.backbones import registry
from ttame_jax.backbones.convert_tables import TABLES, Rule

# timm model names accepted by convert_timm as aliases of ours.
TIMM_NAMES = {"vit_base_patch16_224": "vit_b_16"}
_IGNORED_SUFFIXES = ("num_batches_tracked",)


def convert_torchvision(name: str, state_dict_or_path, **model_kw) -> dict:
    """torchvision checkpoint -> ``{"params": ..., "batch_stats": ...}`` for ``create(name)``.

    Args:
      name: backbone name (``vgg16``, ``resnet50``, ``vit_b_16``).
      state_dict_or_path: a ``state_dict`` (torch tensors or NumPy arrays), or a
        path to a ``.pth``/``.pt`` (needs torch) or ``.safetensors`` file.
      **model_kw: passed to ``create(name, ...)``, e.g. ``num_classes=10``.

    Returns:
      Flax variables as nested dicts of float32 NumPy arrays.
    """
    return _convert(name, "torchvision", state_dict_or_path, model_kw)


def convert_timm(name: str, state_dict_or_path, **model_kw) -> dict:
    """Like :func:`convert_torchvision` for timm's ``vgg16``, ``resnet50``,
    ``vit_base_patch16_224`` and ``deit_base_patch16_224`` checkpoints (``name`` may be
    ours or timm's; a DeiT of another size converts with the size arguments of
    :class:`~ttame_jax.backbones.vit.ViT_B_16` in ``model_kw``).

    timm's VGG-16 head is a ``ConvMlp`` (``pre_logits.fc1`` a 7x7 conv on the
    7x7 feature map): it becomes our ``classifier_0`` and matches timm exactly
    at 224x224 input.
    """
    return _convert(TIMM_NAMES.get(name, name), "timm", state_dict_or_path, model_kw)


def load_state_dict(source) -> dict[str, np.ndarray]:
    """Reads a checkpoint into ``{key: float32 np.ndarray}``.

    ``source`` is a mapping (torch tensors / arrays) or a ``.pth``/``.pt``/
    ``.bin``/``.safetensors`` path. A ``{"state_dict": ...}`` or ``{"model": ...}``
    wrapper and a ``module.`` prefix (DataParallel) are unwrapped.
    """
    if isinstance(source, (str, os.PathLike)):
        source = _read_file(os.fspath(source))
    if not isinstance(source, Mapping):
        raise TypeError(
            f"expected a state_dict mapping or a file path, got {type(source).__name__}"
        )
    for wrapper in ("state_dict", "model"):
        if wrapper in source and isinstance(source[wrapper], Mapping):
            source = source[wrapper]
    keys = list(source)
    strip = len("module.") if keys and all(k.startswith("module.") for k in keys) else 0
    return {k[strip:]: _to_numpy(v) for k, v in source.items()}


def expected_shapes(name: str, **model_kw) -> dict[tuple[str, ...], tuple[int, ...]]:
    """``{flat Flax path: shape}`` of ``create(name, **model_kw)``'s variables (no compute)."""
    spec = registry.get_spec(name)
    module = spec.builder(**model_kw)
    size = model_kw.get("image_size", spec.input_size)  # a ViT built for another size
    x = jnp.zeros((1, size, size, 3), jnp.float32)
    tree = jax.eval_shape(module.init, jax.random.key(0), x)
    return {p: tuple(a.shape) for p, a in traverse_util.flatten_dict(tree).items()}


def check_variables(flat: Mapping[tuple[str, ...], np.ndarray], expected, what: str) -> None:
    """Raises one ``ValueError`` listing every missing, unexpected and mis-shaped path."""
    missing = [p for p in expected if p not in flat]
    unexpected = [p for p in flat if p not in expected]
    wrong = [
        f"{'/'.join(p)}: got {tuple(np.shape(flat[p]))}, expected {expected[p]}"
        for p in expected
        if p in flat and tuple(np.shape(flat[p])) != expected[p]
    ]
    _raise_if(what, [("/".join(p)) for p in missing], ["/".join(p) for p in unexpected], wrong)


def _convert(name: str, source: str, state_dict_or_path, model_kw) -> dict:
    tables = TABLES[source]
    if name not in tables:
        registry.get_spec(name)  # unknown names: error listing the known backbones
        raise ValueError(
            f"no {source} converter for backbone {name!r}; available for: {', '.join(tables)}"
        )
    sd = load_state_dict(state_dict_or_path)
    sd = {k: v for k, v in sd.items() if not k.endswith(_IGNORED_SUFFIXES)}
    rules = tables[name](**model_kw)
    expected = expected_shapes(name, **model_kw)
    flat, missing, wrong = _apply(rules, sd, expected)
    unexpected = sorted(set(sd) - {r.key for r in rules})
    what = f"{source} checkpoint for {name}"
    other = "timm" if source == "torchvision" else "torchvision"
    hint = ""
    if missing and set(sd) == {r.key for r in TABLES[other].get(name, lambda **_: [])(**model_kw)}:
        hint = f"\nthis looks like a {other} checkpoint: use convert_{other}({name!r}, ...)"
    _raise_if(what, missing, unexpected, wrong, hint)
    check_variables(flat, expected, f"converted {what} (table bug)")
    return traverse_util.unflatten_dict(flat)


def _apply(rules: list[Rule], sd, expected):
    """Applies each rule; returns (flat variables, missing keys, shape problems)."""
    flat, missing, wrong = {}, [], []
    for rule in rules:
        if rule.key not in sd:
            missing.append(rule.key)
            continue
        w = sd[rule.key]
        try:
            outs = rule.fn(w)
        except ValueError:
            outs = None
        want = [expected[p] for p in rule.paths]
        if outs is None or [o.shape for o in outs] != want:
            targets = ", ".join(f"{'/'.join(p)} {s}" for p, s in zip(rule.paths, want, strict=True))
            wrong.append(f"{rule.key}: checkpoint shape {tuple(w.shape)} does not fit {targets}")
            continue
        flat.update(zip(rule.paths, (np.ascontiguousarray(o) for o in outs), strict=True))
    return flat, missing, wrong


def _raise_if(what, missing, unexpected, wrong, hint=""):
    if not (missing or unexpected or wrong):
        return
    parts = [f"{len(missing)} missing: {', '.join(missing)}"] if missing else []
    parts += [f"{len(unexpected)} unexpected: {', '.join(unexpected)}"] if unexpected else []
    parts += [f"{len(wrong)} with wrong shape:\n    " + "\n    ".join(wrong)] if wrong else []
    raise ValueError(f"{what} does not match the model:\n  " + "\n  ".join(parts) + hint)


def _read_file(path: str):
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return load_file(path)
    if path.endswith((".pth", ".pt", ".bin")):
        try:
            import torch
        except ImportError:
            raise ImportError(
                f"reading {path} needs PyTorch (pip install torch); or save the state_dict "
                "as .safetensors, which is read without torch"
            ) from None
        return torch.load(path, map_location="cpu", weights_only=True)
    raise ValueError(f"unsupported checkpoint file {path}: use .pth, .pt, .bin or .safetensors")


def _to_numpy(v) -> np.ndarray:
    if hasattr(v, "detach"):  # a torch tensor; bfloat16 has no NumPy dtype, so upcast first
        v = v.detach().cpu().float().numpy()
    return np.asarray(v, dtype=np.float32)
