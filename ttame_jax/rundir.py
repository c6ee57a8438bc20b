"""The run directory (workdir) of a T-TAME training run: layout, config and checkpoints.

Every reader and writer of a workdir goes through this module: the trainer, the
benchmark, ``ttame_jax.load``, the evaluator and the CLI. It sits below ``core`` and
``training`` (it imports only :mod:`ttame_jax.config`, JAX and Orbax). Layout::

    workdir/config.json        the full config of the run (written at start)
    workdir/metrics.jsonl      one JSON object per logged train step / validation
    workdir/checkpoints/<step>/attention   {"params", "batch_stats"} of the attention
    workdir/checkpoints/<step>/opt_state   optimizer state (needed only to resume)

The step directory's number is the number of optimizer steps taken, which is also the
data position: step ``s`` resumes at batch ``s % steps_per_epoch`` of epoch
``s // steps_per_epoch`` of the deterministic, seeded data order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from ttame_jax.config import Config, from_dict, to_dict


class _QuietReadOnly(logging.Filter):
    """Drops Orbax's "Given directory is read only" warning: reading is what we asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("Given directory is read only")


logging.getLogger("absl").addFilter(_QuietReadOnly())

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
ITEMS = ("attention", "opt_state")


def find(path: str) -> str:
    """The workdir that holds ``path``: ``path`` itself or the nearest parent with a
    ``config.json`` (so ``workdir/checkpoints`` or a step folder work too).

    Raises:
      FileNotFoundError: ``path`` does not exist or is not inside a training workdir.
    """
    if not path:
        raise FileNotFoundError("no checkpoint given: pass the workdir of a training run")
    start = os.path.abspath(os.fspath(path))
    if not os.path.exists(start):
        raise FileNotFoundError(
            f"checkpoint folder {start!r} does not exist; pass the --workdir of a train.py run"
        )
    folder = start if os.path.isdir(start) else os.path.dirname(start)
    while True:
        if os.path.isfile(os.path.join(folder, CONFIG_FILE)):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            raise FileNotFoundError(
                f"no {CONFIG_FILE} in {start!r} or any folder above it: it is not a train.py "
                f"workdir (train first: python train.py --config=... --workdir=DIR writes "
                f"DIR/{CONFIG_FILE} and DIR/{CHECKPOINT_DIR}/)"
            )
        folder = parent


def write_config(workdir: str, config: Config) -> str:
    """Writes ``config`` as JSON to ``workdir/config.json`` (atomically); returns the path."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, CONFIG_FILE)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(to_dict(config), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return path


def read_config(workdir: str) -> Config:
    """The typed :class:`~ttame_jax.config.Config` of ``workdir/config.json``."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: {workdir!r} is not a training workdir of train.py "
            "(it should hold config.json and checkpoints/)"
        )
    with open(path) as f:
        values = json.load(f)
    try:
        return from_dict(values)
    except ValueError as err:
        raise ValueError(f"{path} is not a valid ttame-jax config: {err}") from None


def make_manager(
    workdir: str, *, keep: int = 3, every: int = 1, read_only: bool = False
) -> ocp.CheckpointManager:
    """Orbax manager of ``workdir/checkpoints``: saves every ``every`` steps, keeps ``keep``."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else keep,  # what orbax sets (with a warning) if read-only
        save_interval_steps=0 if read_only else every,
        create=not read_only,
        read_only=read_only,
    )
    directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
    return ocp.CheckpointManager(directory, options=options, item_names=ITEMS)


def steps(workdir: str) -> list[int]:
    """Sorted steps of the finished checkpoints in ``workdir/checkpoints``."""
    if not os.path.isdir(os.path.join(workdir, CHECKPOINT_DIR)):
        return []
    manager = make_manager(workdir, read_only=True)
    try:
        return sorted(int(s) for s in manager.all_steps())
    finally:
        manager.close()


def pick_step(workdir: str, step: int | None = None) -> int:
    """``step`` if it was saved, else (``None``) the latest step.

    Raises:
      FileNotFoundError: the workdir holds no checkpoint.
      ValueError: ``step`` was not saved (the message lists the saved ones).
    """
    saved = steps(workdir)
    if not saved:
        raise FileNotFoundError(
            f"{os.path.join(workdir, CHECKPOINT_DIR)!r} holds no checkpoint (empty or "
            f"missing): train first (python train.py --config=... --workdir={workdir}), or "
            f"point at a finished run"
        )
    if step is None:
        return saved[-1]
    if step not in saved:
        raise ValueError(f"no checkpoint for step {step} in {workdir}; available steps: {saved}")
    return int(step)


def epoch_end_steps(workdir: str, steps_per_epoch: int) -> list[int]:
    """The saved steps that end an epoch (the paper's model selection compares them)."""
    return [s for s in steps(workdir) if s > 0 and s % steps_per_epoch == 0]


def fingerprint(workdir: str, step: int) -> str:
    """Hash of the run's ``config.json`` and the step folder's modification time.

    Retraining into the same workdir up to the same step gives a new fingerprint.
    """
    with open(os.path.join(workdir, CONFIG_FILE), "rb") as f:
        digest = hashlib.sha256(f.read())
    step_dir = os.path.join(workdir, CHECKPOINT_DIR, str(step))
    if os.path.exists(step_dir):
        digest.update(str(os.stat(step_dir).st_mtime_ns).encode())
    return digest.hexdigest()[:16]


def save_state(manager: ocp.CheckpointManager, state, *, force: bool = False) -> bool:
    """Saves a train state (``step``, ``params``, ``batch_stats``, ``opt_state``) under its
    step (asynchronously); ``force`` ignores the interval.

    Returns ``True`` if a checkpoint was started. The caller must never pass a state with
    non-finite values (the train step guarantees that).
    """
    step = int(state.step)
    if step in manager.all_steps():
        return False
    attention = {"params": state.params, "batch_stats": state.batch_stats}
    return manager.save(
        step,
        args=ocp.args.Composite(
            attention=ocp.args.StandardSave(attention),
            opt_state=ocp.args.StandardSave(state.opt_state),
        ),
        force=force,
    )


def save_attention(workdir: str, attn_vars, step: int) -> None:
    """Writes a checkpoint at ``step`` holding only the attention variables (an imported
    or exported model: ``load`` / evaluate / explain read it; training cannot resume it)."""
    manager = make_manager(workdir, keep=1)
    try:
        attention = jax.tree.map(jnp.asarray, attn_vars)
        manager.save(
            step, args=ocp.args.Composite(attention=ocp.args.StandardSave(attention)), force=True
        )
        manager.wait_until_finished()
    finally:
        manager.close()


def _abstract(tree):
    """Shape, dtype and sharding of every leaf: the restore target."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def restore_state(manager: ocp.CheckpointManager, template, step: int | None = None):
    """Restores the state saved at ``step`` (default: latest) into ``template``'s structure.

    Args:
      manager: from :func:`make_manager`.
      template: a freshly initialised train state (placed on the mesh); its shapes,
        dtypes and shardings define the restored arrays.
      step: the step to restore, ``None`` for the latest.

    Returns:
      The restored state, or ``None`` if there is no checkpoint.
    """
    step = manager.latest_step() if step is None else step
    if step is None:
        return None
    attention = {"params": template.params, "batch_stats": template.batch_stats}
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            attention=ocp.args.StandardRestore(_abstract(attention)),
            opt_state=ocp.args.StandardRestore(_abstract(template.opt_state)),
        ),
    )
    return template.replace(
        step=jax.device_put(jnp.asarray(step, jnp.int32), template.step.sharding),
        params=restored["attention"]["params"],
        batch_stats=restored["attention"]["batch_stats"],
        opt_state=restored["opt_state"],
    )


def restore_attention(workdir: str, step: int | None = None) -> dict:
    """The attention variables ``{"params", "batch_stats"}`` saved at ``step`` (default:
    the latest), read-only."""
    step = pick_step(workdir, step)
    manager = make_manager(workdir, read_only=True)
    try:
        restored = manager.restore(
            step, args=ocp.args.Composite(attention=ocp.args.StandardRestore())
        )
    finally:
        manager.close()
    attn = jax.tree.map(jnp.asarray, dict(restored["attention"]))
    return {"params": attn["params"], "batch_stats": attn.get("batch_stats", {})}
