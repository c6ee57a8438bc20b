"""Imports the reference implementation's trained T-TAME checkpoints.

The reference (PyTorch Lightning) saves its whole module: a ``.ckpt`` is a pickled
dict with ``state_dict``, ``epoch``, ``global_step``, ``pytorch-lightning_version``,
``hyper_parameters`` (``model_name``, ``layers``, ``attention_version``, ...) and the
optimizer / scheduler / callback states. Its ``state_dict`` holds:

=============================================  ========================================
reference key                                  ours
=============================================  ========================================
``generic.attn_mech.convs.i.weight`` (C,C,1,1)  ``params/convs_i/kernel`` (1,1,C,C)
``generic.attn_mech.convs.i.bias``              ``params/convs_i/bias``
``generic.attn_mech.bns.i.weight`` / ``.bias``  ``params/bns_i/scale`` / ``bias``
``generic.attn_mech.bns.i.running_mean``        ``batch_stats/bns_i/mean``
``generic.attn_mech.bns.i.running_var``         ``batch_stats/bns_i/var``
``generic.attn_mech.fuser.weight`` (K,ΣC,1,1)   ``params/fuser/kernel`` (1,1,ΣC,K)
``generic.attn_mech.fuser.bias``                ``params/fuser/bias``
``generic.body.<torchvision key>``              backbone (``backbone_weights="checkpoint"``)
=============================================  ========================================

For the ViT the attention sits in ``nn.Sequential(token adapter, attention)``, so its
keys are ``generic.attn_mech.1.convs.i.weight`` etc. (the adapter has no weights).
``bns.i.num_batches_tracked`` and the copy of the backbone under
``generic.arrangement.body.*`` (the module that runs the masked forward pass in
training) are not needed; a ``generic.arrangement.norm.*`` (train methods
"layernorm"/"batchnorm") only acts in training.

The reference's ``generic.body`` is ``torchvision.models.feature_extraction.
create_feature_extractor(model, layers + [output])``: its parameters and buffers keep
the torchvision names. The reference trained with the whole module in train mode, so
the backbone's BatchNorm running statistics drifted from torchvision's and its
evaluation used the drifted ones: ``backbone_weights="checkpoint"`` reproduces that.

The ViT token adapter follows the checkpoint's ``attention_version``: ``"TTAME"``
multiplies the patch tokens by the class token, any other version drops it.

Only the ``TAME`` / ``TTAME`` attention (the paper's) is mapped; the reference's
other attention classes (ablations, ``TAttention*``, ``3D-TAME``) have other layers.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import time
import warnings
from collections import OrderedDict
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, traverse_util

from ttame_jax import rundir
from ttame_jax.backbones import convert, get_spec, load_pretrained
from ttame_jax.config import VIT_ADAPTERS, Config, ModelConfig, from_dict
from ttame_jax.core.model import build

BACKBONES = ("vgg16", "resnet50", "vit_b_16")
BACKBONE_FILE = "backbone_from_reference.msgpack"
RECORD_FILE = "reference_import.json"
ATTN_PREFIX = "generic.attn_mech."
BODY_PREFIX = "generic.body."
# Parts of the reference module that inference does not use.
_UNUSED_PREFIXES = ("generic.arrangement.",)
_VERSIONS = ("TAME", "TTAME")  # identical attention classes; "TTAME" switches the ViT adapter
_KEY = re.compile(
    r"^(?:(?P<kind>convs|bns)\.(?P<i>\d+)\.(?P<p>weight|bias|running_mean|running_var"
    r"|num_batches_tracked)|fuser\.(?P<fp>weight|bias))$"
)
LAYOUT = (
    "a PyTorch Lightning checkpoint of the reference T-TAME (TAMELIT module): a dict with "
    "'state_dict' holding generic.attn_mech.{convs,bns}.<i>.* and generic.attn_mech.fuser.* "
    "(CNN) or generic.attn_mech.1.{convs,bns,fuser}.* (vit_b_16), plus generic.body.* (the "
    "torchvision backbone)"
)


class ReferenceCheckpointError(ValueError):
    """The file is not a reference T-TAME checkpoint that fits the requested backbone."""


def import_reference(
    ckpt_path,
    backbone: str,
    workdir,
    *,
    backbone_weights: str | os.PathLike | None = None,
    vit_adapter: str | None = None,
) -> str:
    """Writes a workdir from a reference ``.ckpt`` that ``ttame_jax.load`` accepts.

    Args:
      ckpt_path: the reference's PyTorch Lightning checkpoint.
      backbone: ``"vgg16"``, ``"resnet50"`` or ``"vit_b_16"``.
      workdir: the folder to write (``config.json``, ``checkpoints/<global_step>/``,
        ``reference_import.json`` and, for ``backbone_weights="checkpoint"``, the
        backbone ``.msgpack``); it must not hold a checkpoint yet.
      backbone_weights: ``None``: the usual lookup at load time (torchvision's file in
        the torch hub cache); ``"checkpoint"``: the backbone saved in the checkpoint
        (with the reference's drifted BatchNorm statistics); a path: a torchvision
        (or ``.msgpack``) weights file.
      vit_adapter: ``"drop-class-token"`` or ``"class-token-product"``; ``None``: as
        the checkpoint's ``attention_version`` says (``"TTAME"``: class-token product).

    Returns:
      the absolute workdir path.

    Raises:
      FileNotFoundError: no such checkpoint or weights file.
      ReferenceCheckpointError: not a reference checkpoint, another layout, or one
        that does not fit ``backbone`` (the message names the file, what was expected
        and what was found).
    """
    ckpt_path = os.path.abspath(os.fspath(ckpt_path))
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
    spec = get_spec(backbone)
    ckpt = read_checkpoint(ckpt_path)
    sd, hparams = ckpt["state_dict"], ckpt["hyper_parameters"]
    _check_hparams(ckpt_path, backbone, hparams)
    adapter = _vit_adapter(ckpt_path, spec.kind, hparams, vit_adapter)
    taps = _taps(ckpt_path, backbone, hparams)
    model = build(spec, ModelConfig(taps=taps, vit_adapter=adapter))
    attn_vars = attention_variables(ckpt_path, sd, model)

    workdir = os.path.abspath(os.fspath(workdir))
    existing = os.path.join(workdir, "checkpoints")
    if os.path.isdir(existing) and os.listdir(existing):
        raise FileExistsError(f"{workdir} already holds checkpoints; import into a new workdir")
    weights, weights_record = _backbone(ckpt_path, sd, backbone, workdir, backbone_weights)
    config = _run_config(backbone, weights=weights, taps=taps, vit_adapter=adapter)
    _write_workdir(workdir, config, attn_vars, step=ckpt["global_step"])
    record = {
        "source": {
            "path": ckpt_path,
            "sha256": _sha256(ckpt_path),
            "bytes": os.path.getsize(ckpt_path),
        },
        "imported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "backbone": backbone,
        "backbone_weights": weights_record,
        "vit_adapter": adapter if spec.kind == "vit" else None,
        "taps": list(model.taps),
        "step": ckpt["global_step"],
        "lightning": {k: _jsonable(ckpt.get(k)) for k in ("pytorch-lightning_version", "epoch")},
        "hyper_parameters": _jsonable(hparams),
    }
    with open(os.path.join(workdir, RECORD_FILE), "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    return workdir


# --------------------------------------------------------------------------- reading


def read_checkpoint(path) -> dict:
    """The checkpoint as ``{"state_dict": {key: float32 array}, "hyper_parameters": {...},
    "global_step": int, "epoch", "pytorch-lightning_version"}``.

    Loaded with ``torch.load(weights_only=True)``; classes of Lightning and other
    packages (which need not be installed) are read as inert placeholders, and no
    code from the file runs.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"reference checkpoint not found: {path}")
    obj = _torch_load(path)
    if not isinstance(obj, Mapping) or not isinstance(obj.get("state_dict"), Mapping):
        raise ReferenceCheckpointError(
            f"{path} is not a PyTorch Lightning checkpoint: expected {LAYOUT}; found "
            f"{_describe(obj)}"
        )
    sd = {}
    for key, value in obj["state_dict"].items():
        if hasattr(value, "detach"):
            sd[str(key)] = value.detach().cpu().float().numpy()
        elif isinstance(value, np.ndarray):
            sd[str(key)] = value.astype(np.float32)
    hparams = obj.get("hyper_parameters")
    return {
        "state_dict": sd,
        "hyper_parameters": dict(hparams) if isinstance(hparams, Mapping) else {},
        "global_step": int(obj.get("global_step") or 0),
        "epoch": obj.get("epoch"),
        "pytorch-lightning_version": obj.get("pytorch-lightning_version"),
    }


class _Placeholder:
    """Stands in for a pickled class or function the importer does not need.

    Calling or instantiating it gives an empty ``OrderedDict``, the one type torch's
    ``weights_only`` unpickler lets both fill item by item (pickled dict subclasses such
    as Lightning's ``AttributeDict``) and give attributes (other pickled objects).
    """

    def __new__(cls, *args, **kwargs):
        return OrderedDict()


def _placeholder(qualname: str):
    module, _, name = qualname.rpartition(".")
    return (type(name or "Placeholder", (_Placeholder,), {"__module__": module}), qualname)


def _torch_load(path: str):
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"reading {path} needs PyTorch (pip install torch); torchvision and Lightning are "
            "not needed"
        ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # classes outside torch's allow-list (Lightning's, scheduler methods, ...)
    except Exception as e:
        raise ReferenceCheckpointError(
            f"{path} is not a PyTorch checkpoint ({type(e).__name__}: {e}); expected {LAYOUT}"
        ) from None
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        with torch.serialization.safe_globals([_placeholder(q) for q in unsafe]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ReferenceCheckpointError(
            f"{path} could not be read as a PyTorch checkpoint ({type(e).__name__}: {e}); "
            f"expected {LAYOUT}"
        ) from None


def _describe(obj) -> str:
    if isinstance(obj, Mapping):
        keys = [str(k) for k in obj]
        if keys and all(hasattr(v, "shape") for v in obj.values()):
            return (
                f"a plain state dict of {len(keys)} tensors ({', '.join(keys[:4])}, ...): "
                "backbone weights? pass those with backbone_weights=PATH"
            )
        return f"a dict with keys {keys[:12]}"
    return f"a {type(obj).__name__}"


# ------------------------------------------------------------- hyper-parameters, taps


def _check_hparams(path: str, backbone: str, hparams: Mapping) -> None:
    name = hparams.get("model_name")
    if name is not None and name != backbone:
        raise ReferenceCheckpointError(
            f"{path} was trained on {name!r} (hyper_parameters.model_name), not on {backbone!r}: "
            f"pass --backbone {name}"
        )
    version = hparams.get("attention_version")
    if version is not None and version not in _VERSIONS:
        raise ReferenceCheckpointError(
            f"{path} holds the reference's attention_version {version!r}; only {_VERSIONS} "
            f"(the paper's attention mechanism) can be imported"
        )
    classes = hparams.get("num_classes")
    if classes is not None and int(classes) != get_spec(backbone).num_classes:
        raise ReferenceCheckpointError(
            f"{path} was trained for {classes} classes; {backbone} has "
            f"{get_spec(backbone).num_classes}"
        )


def _vit_adapter(path: str, kind: str, hparams: Mapping, requested: str | None) -> str:
    if requested is not None and requested not in VIT_ADAPTERS:
        raise ValueError(f"vit_adapter must be one of {VIT_ADAPTERS} or None, got {requested!r}")
    if kind != "vit":
        return "drop-class-token"
    version = hparams.get("attention_version")
    implied = "class-token-product" if version == "TTAME" else "drop-class-token"
    if requested is None:
        return implied
    if version is not None and requested != implied:
        warnings.warn(
            f"{path}: attention_version {version!r} was trained with the {implied!r} ViT "
            f"adapter; importing with {requested!r} as asked",
            stacklevel=3,
        )
    return requested


def _taps(path: str, backbone: str, hparams: Mapping) -> tuple[str, ...]:
    """Our tap names for the checkpoint's ``layers`` (torchvision FX node names)."""
    spec = get_spec(backbone)
    layers = hparams.get("layers")
    if not layers:
        return tuple(spec.taps)
    taps = []
    for layer in layers:
        tap = str(layer)
        if spec.kind == "vit":
            # torchvision numbers repeated node names per block: ".ln" is the block's ln_1
            # call, ".ln_1" its ln_2 call and ".add_1" the block output.
            m = re.fullmatch(r"(encoder\.layers\.encoder_layer_\d+)(?:\.(ln|ln_1|add_1))?", tap)
            if m and m.group(2) == "ln_1":
                tap = f"{m.group(1)}.ln_2"
            elif m and m.group(2) == "add_1":
                tap = m.group(1)
        if tap not in spec.tap_paths:
            raise ReferenceCheckpointError(
                f"{path} taps layer {layer!r} (hyper_parameters.layers = {list(layers)}), "
                f"which {backbone} has no tap for; known taps: {', '.join(spec.tap_paths)}"
            )
        taps.append(tap)
    # create_feature_extractor returns the features (and so the branch order convs.i) in
    # execution order, whatever the order of `layers`; our tap table is in that order.
    order = list(spec.tap_paths)
    return tuple(sorted(taps, key=order.index))


# ------------------------------------------------------------------------ attention


def _split_attention(path: str, sd: Mapping, kind: str) -> dict:
    attn = {k[len(ATTN_PREFIX) :]: v for k, v in sd.items() if k.startswith(ATTN_PREFIX)}
    if not attn:
        prefixes = sorted({".".join(k.split(".")[:2]) for k in sd})
        raise ReferenceCheckpointError(
            f"{path} has no {ATTN_PREFIX}* entries: expected {LAYOUT}; found the key "
            f"prefixes {prefixes[:12]}"
        )
    sequential = all(k.startswith("1.") for k in attn)
    if kind == "vit" and not sequential:
        raise ReferenceCheckpointError(
            f"{path}: a vit_b_16 checkpoint keeps the attention under {ATTN_PREFIX}1.* "
            f"(nn.Sequential(token adapter, attention)); found {ATTN_PREFIX}"
            f"{sorted(attn)[0]} ...: is it a CNN checkpoint?"
        )
    if kind == "cnn" and sequential:
        raise ReferenceCheckpointError(
            f"{path}: a CNN checkpoint keeps the attention under {ATTN_PREFIX}convs/bns/fuser.*; "
            f"found {ATTN_PREFIX}{sorted(attn)[0]} ...: is it a vit_b_16 checkpoint?"
        )
    return {k[2:]: v for k, v in attn.items()} if sequential else attn


def _conv_kernel(w: np.ndarray) -> np.ndarray:
    if w.ndim != 4 or w.shape[2:] != (1, 1):
        raise ValueError("not a 1x1 conv weight")
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def attention_variables(path: str, sd: Mapping, model) -> dict:
    """The attention variables ``{"params", "batch_stats"}`` for ``model`` (a TTAME).

    Raises ReferenceCheckpointError listing every unknown, missing and mis-shaped key.
    """
    attn = _split_attention(path, sd, model.spec.kind)
    flat, names, unexpected = {}, {}, []
    for key, w in attn.items():
        m = _KEY.match(key)
        if m is None:
            unexpected.append(key)
            continue
        if m["p"] == "num_batches_tracked":
            continue
        if m["fp"]:
            mod, p = "fuser", m["fp"]
        else:
            mod, p = f"{m['kind']}_{m['i']}", m["p"]
        if mod.startswith("convs") or mod == "fuser":
            target = ("params", mod, "kernel" if p == "weight" else "bias")
        else:
            target = {
                "weight": ("params", mod, "scale"),
                "bias": ("params", mod, "bias"),
                "running_mean": ("batch_stats", mod, "mean"),
                "running_var": ("batch_stats", mod, "var"),
            }[p]
        try:
            flat[target] = _conv_kernel(w) if target[-1] == "kernel" else w
        except ValueError:
            flat[target] = w  # reported as mis-shaped below
        names[target] = key
    expected = _expected_attention_shapes(model)
    prefix = ATTN_PREFIX + ("1." if model.spec.kind == "vit" else "")
    wrong = [
        f"{prefix}{names[t]}: checkpoint shape {tuple(attn[names[t]].shape)} does not fit "
        f"{'/'.join(t)} {expected[t]}"
        for t in flat
        if t in expected and tuple(flat[t].shape) != expected[t]
    ]
    missing = ["/".join(t) for t in expected if t not in flat]
    unexpected += [names[t] for t in flat if t not in expected]
    if wrong or missing or unexpected:
        parts = [f"{len(wrong)} with wrong shape:\n    " + "\n    ".join(wrong)] if wrong else []
        parts += [f"missing in the checkpoint: {', '.join(missing)}"] if missing else []
        if unexpected:
            parts += [f"unexpected: {', '.join(prefix + k for k in sorted(unexpected))}"]
        raise ReferenceCheckpointError(
            f"{path} does not fit T-TAME on {model.spec.name} with taps {list(model.taps)} "
            f"(channels {_channels(expected)}, {model.spec.num_classes} classes):\n  "
            + "\n  ".join(parts)
        )
    tree = traverse_util.unflatten_dict(flat)
    return {"params": tree["params"], "batch_stats": tree.get("batch_stats", {})}


def _expected_attention_shapes(model) -> dict:
    spec = model.spec
    x = jax.ShapeDtypeStruct((1, spec.input_size, spec.input_size, 3), jnp.float32)
    backbone = jax.eval_shape(model.backbone.init, jax.random.key(0), x)
    tree = jax.eval_shape(model.init, jax.random.key(0), backbone, x)
    return {p: tuple(a.shape) for p, a in traverse_util.flatten_dict(tree).items()}


def _channels(expected: Mapping) -> list[int]:
    return [
        shape[-1]
        for path, shape in sorted(expected.items())
        if path[1].startswith("convs_") and path[-1] == "bias"
    ]


# ------------------------------------------------------------------------- backbone


def _backbone(path: str, sd: Mapping, backbone: str, workdir: str, weights):
    """``(config.backbone.weights, record)`` for the ``backbone_weights`` choice."""
    if weights is None:
        return None, {"source": "torchvision cache lookup at load time"}
    if isinstance(weights, str) and weights == "checkpoint":
        body = {k[len(BODY_PREFIX) :]: v for k, v in sd.items() if k.startswith(BODY_PREFIX)}
        if not body:
            raise ReferenceCheckpointError(
                f"{path} has no {BODY_PREFIX}* entries (the backbone), so "
                f"backbone_weights='checkpoint' is impossible; pass a torchvision weights file"
            )
        try:
            variables = convert.convert_torchvision(backbone, body)
        except ValueError as e:
            raise ReferenceCheckpointError(
                f"the backbone in {path} ({BODY_PREFIX}*) is not a torchvision {backbone}: {e}"
            ) from None
        os.makedirs(workdir, exist_ok=True)
        out = os.path.join(workdir, BACKBONE_FILE)
        with open(out, "wb") as f:
            f.write(serialization.msgpack_serialize(variables))
        return out, {"source": "checkpoint", "keys": f"{BODY_PREFIX}*", "file": out}
    weights = os.path.abspath(os.path.expanduser(os.fspath(weights)))
    load_pretrained(backbone, weights)  # fails now, with the converter's message, if unfit
    return weights, {"source": "file", "file": weights, "sha256": _sha256(weights)}


# ---------------------------------------------------------------- config and workdir


def _run_config(backbone: str, *, weights: str | None, taps, vit_adapter: str) -> Config:
    """The run's config: the paper's recipe (the schema's defaults) with these model settings."""
    model = {"vit_adapter": vit_adapter}
    if tuple(taps) != tuple(get_spec(backbone).taps):
        model["taps"] = tuple(taps)
    return from_dict({"backbone": {"name": backbone, "weights": weights}, "model": model})


def _write_workdir(workdir: str, config: Config, attn_vars, *, step: int) -> None:
    """``config.json`` and a checkpoint at ``step`` with the attention variables only."""
    rundir.write_config(workdir, config)
    rundir.save_attention(workdir, attn_vars, step)


# ------------------------------------------------------------------------- helpers


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _jsonable(obj):
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "tolist"):
        return _jsonable(obj.tolist())
    return repr(obj)
