"""What an evaluation reads: the checkpoint folder and the fixed test split.

Each function checks its input and fails with a message that says what was
wrong and how to fix it, before any expensive work starts.
"""

from __future__ import annotations

import hashlib
import json
import os

import ml_collections

from ttame_jax.training import checkpoint as ckpt


def resolve_workdir(checkpoint_dir: str) -> str:
    """The training workdir of ``checkpoint_dir`` (the workdir itself or its ``checkpoints/``).

    Raises:
      FileNotFoundError: the folder is missing, has no ``config.json`` or no checkpoint.
    """
    if not checkpoint_dir:
        raise FileNotFoundError("no checkpoint given: pass --checkpoint=DIR (a train.py workdir)")
    path = os.path.abspath(os.fspath(checkpoint_dir))
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"checkpoint folder {path!r} does not exist; pass the --workdir of a train.py run"
        )
    if os.path.basename(path) == ckpt.CHECKPOINT_DIR and not os.path.isfile(
        os.path.join(path, ckpt.CONFIG_FILE)
    ):
        path = os.path.dirname(path)
    if not os.path.isfile(os.path.join(path, ckpt.CONFIG_FILE)):
        raise FileNotFoundError(
            f"{path!r} has no {ckpt.CONFIG_FILE}: it is not a train.py workdir (train first: "
            f"python train.py --config=... --workdir={path})"
        )
    if not checkpoint_steps(path):
        raise FileNotFoundError(
            f"{os.path.join(path, ckpt.CHECKPOINT_DIR)!r} holds no checkpoint (empty or "
            f"missing): train first, or point --checkpoint at a finished run"
        )
    return path


def checkpoint_steps(workdir: str) -> list[int]:
    """Sorted steps of the finished checkpoints in ``workdir/checkpoints``."""
    folder = os.path.join(workdir, ckpt.CHECKPOINT_DIR)
    if not os.path.isdir(folder):
        return []
    manager = ckpt.make_manager(workdir, read_only=True)
    try:
        return sorted(int(s) for s in manager.all_steps())
    finally:
        manager.close()


def pick_step(workdir: str, step: int | None) -> int:
    """``step`` if it was saved, else (``None``) the latest step."""
    steps = checkpoint_steps(workdir)
    if step is None:
        return steps[-1]
    if step not in steps:
        raise ValueError(f"no checkpoint for step {step} in {workdir}; available steps: {steps}")
    return int(step)


def checkpoint_fingerprint(workdir: str, step: int) -> str:
    """Hash of the run's ``config.json`` and the step folder's modification time.

    Retraining into the same workdir up to the same step gives a new fingerprint.
    """
    digest = hashlib.sha256(open(os.path.join(workdir, ckpt.CONFIG_FILE), "rb").read())
    step_dir = os.path.join(workdir, ckpt.CHECKPOINT_DIR, str(step))
    if os.path.exists(step_dir):
        digest.update(str(os.stat(step_dir).st_mtime_ns).encode())
    return digest.hexdigest()[:16]


def check_same_model(config, saved) -> None:
    """Rejects an evaluation config whose backbone or taps differ from the checkpoint's."""
    for section, field in (("backbone", "name"), ("model", "taps")):
        ours, theirs = config[section][field], saved[section][field]
        if field == "taps":
            ours, theirs = tuple(ours or ()), tuple(theirs or ())
        if ours != theirs:
            raise ValueError(
                f"--config has {section}.{field}={ours!r} but the checkpoint was trained with "
                f"{theirs!r}; use the training config (or omit --config to use the checkpoint's)"
            )


def open_split(config: ml_collections.ConfigDict, split: str, input_size: int):
    """The data Source of ``split`` described by ``config.data``.

    Raises:
      FileNotFoundError / ValueError: from the data package, with the data config added.
    """
    from ttame_jax.data import build_source

    try:
        source = build_source(config.data, split, input_size=input_size, seed=0)
    except (FileNotFoundError, NotADirectoryError, ValueError) as err:
        missing = isinstance(err, (FileNotFoundError, NotADirectoryError))
        raise (FileNotFoundError if missing else ValueError)(
            f"cannot open the {split} split of config.data (name={config.data.get('name')!r}): "
            f"{err} (override data fields with --config.data.<field>=...; see docs/data.md)"
        ) from err
    if len(source) == 0:
        raise FileNotFoundError(f"the {split} split of config.data is empty: {config.data}")
    return source


def split_fingerprint(config: ml_collections.ConfigDict, split: str, source) -> str:
    """Hash of the data config, split size and (where the source names them) its images."""
    data = config.data.to_dict() if hasattr(config.data, "to_dict") else dict(config.data)
    digest = hashlib.sha256(json.dumps([split, data, len(source)], default=str).encode())
    describe = getattr(source, "describe", None)
    if describe is not None:
        for i in range(len(source)):
            digest.update(str(describe(i)).encode() + b"\n")
    return digest.hexdigest()[:16]
