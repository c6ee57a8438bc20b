"""Resolves a backbone's weights: explicit file, torchvision's cache, or random init.

Nothing is ever downloaded. Resolution order for ``load_pretrained(name, weights)``:

1. ``weights`` is a path: ``.pth``/``.pt``/``.bin``/``.safetensors`` are
   converted (torchvision naming, or timm naming when the keys are timm's);
   ``.msgpack`` holds ``flax.serialization.to_bytes(variables)`` written by this
   project and is restored against the model's shapes.
2. ``weights`` is ``"random"``: ``module.init`` with ``seed``.
3. ``weights`` is ``None``: the spec's ``weights_file`` in torchvision's cache
   directory (``$TORCH_HOME/hub/checkpoints``, default
   ``${XDG_CACHE_HOME:-~/.cache}/torch/hub/checkpoints``); if absent, a
   ``FileNotFoundError`` says which file to put where.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import serialization, traverse_util

from ttame_jax.backbones import convert, registry
from ttame_jax.backbones.convert_tables import TABLES

TORCHVISION_URL = "https://download.pytorch.org/models/"


def torch_hub_checkpoints_dir() -> Path:
    """torchvision's download directory, computed like ``torch.hub.get_dir()`` (no torch import)."""
    if os.environ.get("TORCH_HOME"):
        hub = Path(os.environ["TORCH_HOME"]).expanduser() / "hub"
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
        hub = Path(cache).expanduser() / "torch" / "hub"
    return hub / "checkpoints"


def load_pretrained(name: str, weights: str | os.PathLike | None = None, *, seed: int = 0, **kw):
    """Returns the Flax variables (``{"params", "batch_stats"?}``) of backbone ``name``.

    Args:
      name: registry name, e.g. ``"resnet50"``.
      weights: a file path, ``"random"``, or ``None`` (torchvision cache lookup).
      seed: PRNG seed for ``"random"``.
      **kw: model keyword arguments (e.g. ``num_classes``) the weights were made for.

    Raises:
      FileNotFoundError: no path given and the cache lacks the file (the message
        names the file and the directory to put it in).
      ValueError: the checkpoint does not fit the model (every problem listed).
    """
    spec = registry.get_spec(name)
    if isinstance(weights, str) and weights == "random":
        return _random_init(spec, tuple(sorted(kw.items())))(jax.random.key(seed))
    if weights is None:
        weights = _cached_file(spec)
    path = Path(weights).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"weights file for {name} not found: {path}")
    if path.suffix == ".msgpack":
        return _restore_msgpack(name, path, kw)
    return jax.tree.map(jnp.asarray, _convert_any(name, path, kw))


@functools.lru_cache(maxsize=8)
def _random_init(spec: registry.BackboneSpec, kw: tuple):
    """Jitted ``key -> variables`` for ``spec.builder(**dict(kw))``, compiled once per process.

    ``lazy_init`` runs the initialisers only, no forward pass; compiling the ~160
    initialisers of a big backbone still takes tens of seconds on a CPU.
    """
    module = spec.builder(**dict(kw))
    x = jax.ShapeDtypeStruct((1, spec.input_size, spec.input_size, 3), jnp.float32)
    return jax.jit(lambda key: module.lazy_init(key, x))


def _cached_file(spec: registry.BackboneSpec) -> Path:
    if spec.weights_file is None:
        raise FileNotFoundError(
            f"backbone {spec.name!r} has no published weights file; pass weights=<path to a "
            f".msgpack/.pth/.safetensors file> or weights='random'"
        )
    folder = torch_hub_checkpoints_dir()
    path = folder / spec.weights_file
    if not path.exists():
        raise FileNotFoundError(
            f"pretrained weights for {spec.name} not found: expected the torchvision file "
            f"{spec.weights_file} in {folder} (nothing is downloaded here). Get it "
            f"({spec.weights_url or TORCHVISION_URL + spec.weights_file}) and put it in that "
            f"directory, set "
            f"$TORCH_HOME to the folder above hub/, or pass the weights path explicitly."
        )
    return path


def _convert_any(name: str, path: Path, kw) -> dict:
    """Converts with timm's table when the keys are exactly timm's (or the backbone has
    only a timm table, as DeiT-B), else torchvision's."""
    sd = _read_state_dict(name, path)
    timm_table = TABLES["timm"].get(name)
    if timm_table is not None:
        if name not in TABLES["torchvision"]:
            return convert.convert_timm(name, sd, **kw)
        keys = {k for k in sd if not k.endswith("num_batches_tracked")}
        if keys == {r.key for r in timm_table(**kw)} and keys != {
            r.key for r in TABLES["torchvision"][name](**kw)
        }:
            return convert.convert_timm(name, sd, **kw)
    return convert.convert_torchvision(name, sd, **kw)


def _read_state_dict(name: str, path: Path) -> dict:
    """``convert.load_state_dict`` with errors that name the file and what was expected."""
    if path.suffix not in (".pth", ".pt", ".bin", ".safetensors"):
        return convert.load_state_dict(path)  # raises its "unsupported file" error
    try:
        return convert.load_state_dict(path)
    except ImportError:
        raise
    except Exception as e:  # torch's UnpicklingError / RuntimeError, safetensors' errors
        kind = "safetensors file" if path.suffix == ".safetensors" else "PyTorch checkpoint"
        raise ValueError(
            f"cannot read the weights file {path} for backbone {name} ({type(e).__name__}): "
            f"expected a {kind} holding the backbone's state_dict of tensors (saved with "
            f"torch.save(model.state_dict(), path) or safetensors' save_file); the file may "
            f"be truncated or not a checkpoint at all"
        ) from e


def _restore_msgpack(name: str, path: Path, kw) -> dict:
    try:
        state = serialization.msgpack_restore(path.read_bytes())
    except Exception as e:  # msgpack's errors ("Unpack failed: ...") name no file
        raise ValueError(
            f"cannot read the weights file {path} for backbone {name} ({type(e).__name__}: "
            f"{e}): expected flax.serialization.to_bytes(variables) of the backbone; the file "
            f"may be truncated or not a .msgpack weights file"
        ) from e
    if not isinstance(state, dict):
        raise ValueError(
            f"{path} does not hold a Flax variables dict (expected "
            f"flax.serialization.to_bytes(variables) of backbone {name})"
        )
    flat = traverse_util.flatten_dict(state)
    convert.check_variables(flat, convert.expected_shapes(name, **kw), f"{path} for {name}")
    return jax.tree.map(jnp.asarray, state)
