"""The run directory (workdir) of a T-TAME training run: layout, config and checkpoints.

Every reader and writer of a workdir goes through this module: the trainer, the
benchmark, ``ttame_jax.load``, the evaluator and the CLI. It sits below ``core`` and
``training`` (it imports only :mod:`ttame_jax.config`, JAX and Orbax). Layout::

    workdir/config.json        the full config of the run (written at start)
    workdir/config.<n>.json    a later config, continued with --allow-config-change
    workdir/metrics.jsonl      one JSON object per logged train step / validation
    workdir/kept_steps.json    steps kept out of checkpoint rotation (config changes)
    workdir/train.lock         held (flock) by the one process training in the workdir
    workdir/checkpoints/<step>/attention   {"params", "batch_stats"} of the attention
    workdir/checkpoints/<step>/opt_state   optimizer state (needed only to resume)

The step directory's number is the number of optimizer steps taken, which is also the
data position: step ``s`` resumes at batch ``s % steps_per_epoch`` of epoch
``s // steps_per_epoch`` of the deterministic, seeded data order.

The rules that keep a user's work (docs/safety.md) live here: :func:`check_config` (who
may continue a run, which config file is written), :func:`lock` (one training process
per workdir), :func:`restore_state` / :func:`load_attention` (the newest checkpoint that
restores) and :func:`make_manager` (rotation never removes :func:`kept_steps`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import time

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from ttame_jax.config import Config, from_dict, to_dict
from ttame_jax.fileio import atomic_write_json

log = logging.getLogger(__name__)


class _QuietReadOnly(logging.Filter):
    """Drops Orbax's "Given directory is read only" warning: reading is what we asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("Given directory is read only")


logging.getLogger("absl").addFilter(_QuietReadOnly())

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
KEEP_FILE = "kept_steps.json"
LOCK_FILE = "train.lock"
ITEMS = ("attention", "opt_state")

# The sections that decide what training computes (eval, benchmark and classifier are
# read by other commands). A workdir with a checkpoint is continued only under the same
# values of every field of these sections except COSMETIC_FIELDS.
RUN_SECTIONS = ("backbone", "model", "loss", "data", "train")
# Sections whose checkpoints another value cannot use: never continued, even on opt-in.
MODEL_SECTIONS = ("backbone", "model")
# Fields of MODEL_SECTIONS that change the numbers but not what a checkpoint holds: a change
# continues on opt-in, like a train setting.
OPT_IN_MODEL_FIELDS = frozenset({"model.backbone_dtype"})
# Fields that change how a run is logged, paced or stored, never what it computes.
COSMETIC_FIELDS = frozenset(
    {
        "train.log_every",
        "train.progress_bar",
        "train.tensorboard",
        "train.halt_after_steps",
        "train.checkpoint_every",
        "train.keep_checkpoints",
        "train.keep_epoch_checkpoints",
        "data.num_workers",
        "data.prefetch",
    }
)


class CheckpointError(ValueError):
    """No checkpoint of a workdir could be restored (each step tried is named)."""


class ConfigChangeError(ValueError):
    """A workdir with checkpoints was given a config that changes its result."""


class WorkdirLockedError(FileExistsError):
    """Another live process is training in the workdir."""


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
    atomic_write_json(path, to_dict(config))
    return path


def read_config(workdir: str) -> Config:
    """The typed :class:`~ttame_jax.config.Config` of ``workdir/config.json``."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: {workdir!r} is not a training workdir of train.py "
            "(it should hold config.json and checkpoints/)"
        )
    return _read_config_file(path)


def config_files(workdir: str) -> list[str]:
    """``config.json`` then ``config.1.json``, ``config.2.json``, ... that exist, in order."""
    numbered = []
    if os.path.isdir(workdir):
        for name in os.listdir(workdir):
            match = re.fullmatch(r"config\.(\d+)\.json", name)
            if match:
                numbered.append((int(match.group(1)), name))
    names = [CONFIG_FILE] if os.path.exists(os.path.join(workdir, CONFIG_FILE)) else []
    names += [name for _, name in sorted(numbered)]
    return [os.path.join(workdir, name) for name in names]


def _read_config_file(path: str) -> Config:
    with open(path) as f:
        values = json.load(f)
    train = values.get("train") if isinstance(values, dict) else None
    if isinstance(train, dict) and "augment" not in train:
        # Written before train.augment existed: such runs augmented every backbone, so a
        # continuation under the new default ("auto") is seen as a change, not silent.
        train["augment"] = "always"
    try:
        return from_dict(values)
    except ValueError as err:
        raise ValueError(f"{path} is not a valid ttame-jax config: {err}") from None


def _flat(config: Config) -> dict:
    """``{"train.max_lr": 0.05, ...}`` over :data:`RUN_SECTIONS`."""
    values = to_dict(config)
    return {f"{s}.{k}": v for s in RUN_SECTIONS for k, v in values[s].items()}


def config_changes(old: Config, new: Config) -> list[tuple[str, object, object]]:
    """``(field, old, new)`` for every result-changing field (see COSMETIC_FIELDS) that
    differs between ``old`` and ``new``."""
    a, b = _flat(old), _flat(new)
    return [
        (key, a.get(key), b.get(key))
        for key in sorted(set(a) | set(b))
        if key not in COSMETIC_FIELDS and a.get(key) != b.get(key)
    ]


def check_config(
    workdir: str, config: Config, *, allow_change: bool = False, write: bool = True
) -> bool:
    """The rule for starting a run in ``workdir`` with ``config``; writes its config file
    (unless ``write`` is false: then it only checks).

    * No checkpoint yet: not a run yet (e.g. a start that failed on missing weights);
      ``config.json`` is (re)written freely.
    * Checkpoints, same result-changing fields (cosmetic ones may differ): continues;
      no config file is touched.
    * Checkpoints, other ``backbone`` / ``model``: refused (they cannot be restored).
    * Checkpoints, other ``loss`` / ``data`` / ``train``: refused unless
      ``allow_change``; then the config goes to the next ``config.<n>.json`` (never
      over ``config.json``) and the latest checkpoint is kept out of rotation for good.

    Returns:
      ``True`` if the run continues under a changed config (opt-in).

    Raises:
      ConfigChangeError: listing the differing fields (old -> new) and the ways forward.
    """
    files = config_files(workdir)
    saved = steps(workdir)
    if not saved or not files:
        if write:
            write_config(workdir, config)
        return False
    changes = config_changes(_read_config_file(files[-1]), config)
    if not changes:
        return False
    listing = "\n  ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in changes)
    where = f"{workdir} holds checkpoints (steps {saved}) of a run with another config"
    if any(
        key.split(".")[0] in MODEL_SECTIONS and key not in OPT_IN_MODEL_FIELDS
        for key, _, _ in changes
    ):
        raise ConfigChangeError(
            f"{where}:\n  {listing}\nits checkpoints belong to another model: use a new "
            f"--workdir (or move {workdir} away)"
        )
    if not allow_change:
        raise ConfigChangeError(
            f"{where}:\n  {listing}\nnothing was changed. Either use a new --workdir, or "
            f"continue this run under the new settings with --allow-config-change "
            f"(train_and_evaluate(..., allow_config_change=True)): the new config is "
            f"written to config.<n>.json and step {saved[-1]} is kept"
        )
    path = os.path.join(workdir, f"config.{len(files)}.json")
    if not write:
        return True
    atomic_write_json(path, to_dict(config))
    keep_step(workdir, saved[-1])
    log.warning("%s; continuing under %s (opt-in):\n  %s", where, path, listing)
    return True


def kept_steps(workdir: str) -> list[int]:
    """Steps never deleted by checkpoint rotation (where a config change continued)."""
    path = os.path.join(workdir, KEEP_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return sorted(int(s) for s in json.load(f))


def keep_step(workdir: str, step: int) -> None:
    """Adds ``step`` to :func:`kept_steps`."""
    atomic_write_json(os.path.join(workdir, KEEP_FILE), sorted({*kept_steps(workdir), int(step)}))


def make_manager(
    workdir: str,
    *,
    keep: int = 3,
    every: int = 1,
    epoch_steps: int = 0,
    read_only: bool = False,
) -> ocp.CheckpointManager:
    """Orbax manager of ``workdir/checkpoints``: saves every ``every`` steps, keeps the
    ``keep`` latest, every :func:`kept_steps` step and (``epoch_steps`` > 0: the steps
    per epoch) every epoch end, i.e. every multiple of ``epoch_steps``."""
    policies = ocp.checkpoint_managers
    rules = [policies.LatestN(n=keep), policies.CustomSteps(steps=kept_steps(workdir))]
    if epoch_steps > 0:
        rules.append(policies.EveryNSteps(interval_steps=int(epoch_steps)))
    preserve = policies.AnyPreservationPolicy(rules)
    options = ocp.CheckpointManagerOptions(
        preservation_policy=None if read_only else preserve,
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


def restore_state(workdir: str, template):
    """Restores the newest checkpoint of ``workdir`` that restores into ``template``'s
    structure (for resuming: newer damaged steps are warned about and set aside).

    Args:
      workdir: the run directory.
      template: a freshly initialised train state (placed on the mesh); its shapes,
        dtypes and shardings define the restored arrays.

    Returns:
      The restored state, or ``None`` if there is no checkpoint.

    Raises:
      CheckpointError: there are checkpoints but none restores (each step is named).
    """
    if not steps(workdir):
        return None
    attention = {"params": template.params, "batch_stats": template.batch_stats}
    args = ocp.args.Composite(
        attention=ocp.args.StandardRestore(_abstract(attention)),
        opt_state=ocp.args.StandardRestore(_abstract(template.opt_state)),
    )
    step, restored = _restore_newest(workdir, None, args, set_aside=True)
    return template.replace(
        step=jax.device_put(jnp.asarray(step, jnp.int32), template.step.sharding),
        params=restored["attention"]["params"],
        batch_stats=restored["attention"]["batch_stats"],
        opt_state=restored["opt_state"],
    )


def restore_attention(workdir: str, step: int | None = None) -> dict:
    """The attention variables ``{"params", "batch_stats"}`` saved at ``step`` (default:
    the newest step that restores), read-only."""
    return load_attention(workdir, step)[1]


def load_attention(workdir: str, step: int | None = None) -> tuple[int, dict]:
    """``(step, attention variables)``: of ``step``, or (``None``) of the newest step
    that restores, with a warning naming newer damaged steps.

    Raises:
      FileNotFoundError: the workdir holds no checkpoint.
      ValueError: ``step`` was not saved.
      CheckpointError: no candidate step restores (each one is named).
    """
    pick_step(workdir, step)  # the clear errors of a missing checkpoint / step
    args = ocp.args.Composite(attention=ocp.args.StandardRestore())
    step, restored = _restore_newest(workdir, step, args, set_aside=False)
    attn = jax.tree.map(jnp.asarray, dict(restored["attention"]))
    return step, {"params": attn["params"], "batch_stats": attn.get("batch_stats", {})}


def _restore_newest(workdir: str, step: int | None, args, *, set_aside: bool):
    """``(step, restored)`` of ``step`` or else the newest step whose restore succeeds.

    Damaged newer steps are warned about and, with ``set_aside`` (the trainer, which
    will save those steps again), renamed to ``checkpoints/damaged.<step>.<time>``.
    """
    candidates = [int(step)] if step is not None else steps(workdir)[::-1]
    failed = []
    manager = make_manager(workdir, read_only=True)
    try:
        for candidate in candidates:
            try:
                restored = manager.restore(candidate, args=args)
            except Exception as err:  # noqa: BLE001 - any failure: try the next older step
                failed.append((candidate, _first_line(err)))
                continue
            break
        else:
            tried = "\n  ".join(f"step {s}: {why}" for s, why in failed)
            raise CheckpointError(
                f"no checkpoint of {workdir} could be restored; tried:\n  {tried}\n"
                f"the files are damaged or incomplete (an imported model has no optimizer "
                f"state: training cannot resume it): pick another --step, or retrain in a "
                f"new --workdir"
            )
    finally:
        manager.close()
    for bad, why in failed:
        log.warning(
            "checkpoint step %d of %s is damaged (%s); using step %d", bad, workdir, why, candidate
        )
        if set_aside:
            _set_aside(workdir, bad)
    return candidate, restored


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200] if text else ''}"


def _set_aside(workdir: str, step: int) -> None:
    folder = os.path.join(workdir, CHECKPOINT_DIR)
    target = os.path.join(folder, f"damaged.{step}.{int(time.time())}")
    os.replace(os.path.join(folder, str(step)), target)
    log.warning("moved the damaged checkpoint step %d to %s", step, target)


@contextlib.contextmanager
def lock(workdir: str):
    """Holds ``workdir/train.lock`` (``fcntl.flock``) while training in ``workdir``.

    The lock file names the holder (pid, host, start time). The kernel releases the
    lock when the holder exits, however it ends, so a lock left by a dead process is
    taken over (with a warning naming it).

    Raises:
      WorkdirLockedError: another live process holds the lock (its pid and host named).
    """
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkdirLockedError(
                f"{workdir} is in use: another training process ({_holder(fd)}) holds "
                f"{path}. Wait for it to finish or stop it, or use another --workdir"
            ) from None
        previous = _holder(fd)
        if previous:
            log.warning("taking over %s from %s, which ended without releasing it", path, previous)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        _rewrite(fd, json.dumps(me))
        try:
            yield
        finally:
            _rewrite(fd, "")
    finally:
        os.close(fd)  # releases the flock


def _holder(fd: int) -> str:
    """``pid 123 on host h`` from the lock file's contents ('' if empty or unreadable)."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode() or "null")
        return f"pid {holder['pid']} on host {holder['host']}" if holder else ""
    except (ValueError, KeyError, TypeError):
        return "unknown holder"


def _rewrite(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)
    os.fsync(fd)
