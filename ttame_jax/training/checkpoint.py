"""Workdir layout, config.json and Orbax checkpoints of the train state.

Layout of a training workdir::

    workdir/config.json        the full config of the run (written at start)
    workdir/metrics.jsonl      one JSON object per logged train step / validation
    workdir/checkpoints/<step>/attention   {"params", "batch_stats"} of the attention
    workdir/checkpoints/<step>/opt_state   optimizer state (needed only to resume)

The step directory's number is the number of optimizer steps taken, which is
also the data position: step ``s`` resumes at batch ``s % steps_per_epoch`` of
epoch ``s // steps_per_epoch`` of the deterministic, seeded data order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


def write_config(workdir: str, config: ml_collections.ConfigDict) -> str:
    """Writes ``config`` as JSON to ``workdir/config.json``; returns the path."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, CONFIG_FILE)
    with open(path, "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
        f.write("\n")
    return path


def _tuplify(node):
    # JSON has no tuples; configs use tuples for sequences (hashable, e.g. model.taps).
    if isinstance(node, Mapping):
        return {k: _tuplify(v) for k, v in node.items()}
    if isinstance(node, list):
        return tuple(_tuplify(v) for v in node)
    return node


def read_config(workdir: str) -> ml_collections.ConfigDict:
    """Reads ``workdir/config.json`` back into a locked ``ConfigDict``."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: {workdir!r} is not a training workdir of train.py "
            "(it should hold config.json and checkpoints/)"
        )
    with open(path) as f:
        config = ml_collections.ConfigDict(_tuplify(json.load(f)))
    config.lock()
    return config


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
    return ocp.CheckpointManager(directory, options=options, item_names=("attention", "opt_state"))


def save_state(manager: ocp.CheckpointManager, state, *, force: bool = False) -> bool:
    """Saves ``state`` under its step (asynchronously); ``force`` ignores the interval.

    Returns ``True`` if a checkpoint was started. The caller must never pass a
    state with non-finite values (the train step guarantees that).
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


def _abstract(tree):
    """Shape, dtype and sharding of every leaf: the restore target."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def restore_state(manager: ocp.CheckpointManager, template, step: int | None = None):
    """Restores the state saved at ``step`` (default: latest) into ``template``'s structure.

    Args:
      manager: from :func:`make_manager`.
      template: a freshly initialised ``TrainState`` (placed on the mesh); its
        shapes, dtypes and shardings define the restored arrays.
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


def restore_attention(workdir: str, step: int | None = None):
    """Config and attention variables of a training run, for ``ttame_jax.load``.

    Args:
      workdir: the ``--workdir`` of ``train.py``.
      step: checkpoint step; ``None`` for the latest.

    Returns:
      ``(config, attn_vars)`` with ``attn_vars = {"params": ..., "batch_stats": ...}``.
    """
    config = read_config(workdir)
    manager = make_manager(workdir, read_only=True)
    try:
        steps = manager.all_steps()
        if not steps:
            raise FileNotFoundError(
                f"no checkpoint in {os.path.join(workdir, CHECKPOINT_DIR)}; train first "
                f"(python train.py --config=... --workdir={workdir})"
            )
        if step is None:
            step = max(steps)
        elif step not in steps:
            raise ValueError(f"no checkpoint for step {step} in {workdir}; available: {steps}")
        restored = manager.restore(
            step, args=ocp.args.Composite(attention=ocp.args.StandardRestore())
        )
    finally:
        manager.close()
    attn = jax.tree.map(jnp.asarray, dict(restored["attention"]))
    return config, {"params": attn["params"], "batch_stats": attn.get("batch_stats", {})}
