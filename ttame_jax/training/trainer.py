"""``train_and_evaluate(config, workdir)``: the T-TAME training loop.

Start-up order (every cheap check before anything slow): validate the config
-> lock the workdir -> may this config continue the workdir's run -> device mesh ->
data sources (missing dataset: error) -> every batch/split/device size relation
(one error) -> config file -> schedule and optimizer -> backbone weights (missing
weights: error) -> initial state -> resume (newest checkpoint that restores) -> train,
log, checkpoint, validate each epoch. See docs/safety.md for what is safe to interrupt.

The step loop reads nothing back per step (``device_loop``: batches prefetched to the
device, metrics fetched and checked finite only to log or save; docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import threading

import jax

from ttame_jax import rundir
from ttame_jax.config import Config, from_dict, raise_errors
from ttame_jax.training import device_loop, preflight, sharding, val_metrics
from ttame_jax.training.metrics_log import MetricsLogger, drop_records_after
from ttame_jax.training.schedule import OneCycle
from ttame_jax.training.train_step import build_steps

log = logging.getLogger(__name__)

# Exit status of ``ttame train`` after a preemption (EX_TEMPFAIL in BSD sysexits.h:
# "try again later"): a checkpoint was saved; rerunning the command continues the run.
EXIT_PREEMPTED = 75


class Preempted(Exception):  # noqa: N818 (the event, as the caller reads it)
    """Training stopped on SIGTERM or a multi-host preemption notice after saving a
    checkpoint at ``step``; rerunning with the same workdir continues exactly there."""

    def __init__(self, workdir: str, step: int):
        self.workdir, self.step = workdir, step
        super().__init__(
            f"preempted: saved a checkpoint at step {step} in {workdir}/checkpoints; "
            f"rerun the same command to continue from there"
        )


class _PreemptionWatch:
    """Catches SIGTERM while training (a flag read at each step boundary).

    Installed only in the main thread of a single-process run: on several hosts a
    signal reaches one host, so the hosts agree on a step through JAX's preemption
    service instead (``CheckpointManager.reached_preemption``, which
    ``jax.distributed.initialize`` turns on and which catches SIGTERM itself). A second
    SIGTERM runs the previous handler (by default: the process ends at once, which is
    safe; the rerun resumes from the newest checkpoint).
    """

    def __init__(self):
        self.requested = False
        self._previous = None
        self._installed = False

    def __enter__(self):
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, self._handle)
            # None: a handler not set from Python, which cannot be put back; the default.
            self._previous = signal.SIG_DFL if previous is None else previous
            self._installed = True
        return self

    def _handle(self, signum, frame):
        if self.requested:  # the second one: do what would have happened without us
            self.__exit__()
            if callable(self._previous):
                self._previous(signum, frame)
            else:
                os.kill(os.getpid(), signum)
            return
        self.requested = True
        log.warning("SIGTERM: saving a checkpoint at the end of this step, then stopping")

    def __exit__(self, *exc):
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False


def steps_per_epoch(train_cfg, num_examples: int) -> int:
    """Optimizer steps per epoch: full batches of the train split, or the override."""
    full = num_examples // train_cfg.batch_size
    if full == 0:
        raise ValueError(
            f"the train split has {num_examples} examples, fewer than one batch of "
            f"train.batch_size={train_cfg.batch_size}"
        )
    if train_cfg.steps_per_epoch:
        return min(train_cfg.steps_per_epoch, full)
    return full


def size_errors(train_cfg, mesh, num_train: int, num_val: int | None) -> list[str]:
    """Every batch-size relation that would fail later: devices and hosts, the train
    split, and (``num_val`` not ``None``: validation is on) the val split."""
    errors = []
    try:
        sharding.check_batch_size(train_cfg.batch_size, mesh)
    except ValueError as err:
        errors.append(str(err))
    batch = train_cfg.batch_size
    if num_train < batch:
        errors.append(
            f"the train split has {num_train} examples, fewer than one batch of "
            f"train.batch_size={batch}; lower train.batch_size or use more training data"
        )
    if num_val is not None:
        full = num_val // batch
        if full == 0:
            errors.append(
                f"the val split has {num_val} examples, fewer than one batch of "
                f"train.batch_size={batch} (validation runs after each epoch); lower "
                f"train.batch_size, use a larger val split (data.val_size) or set "
                f"train.validate_every_epoch=False"
            )
        elif train_cfg.val_steps > full:
            errors.append(
                f"train.val_steps={train_cfg.val_steps} asks for more val batches than the "
                f"val split holds ({num_val} examples = {full} batches of {batch}); lower "
                f"train.val_steps (0: the whole split)"
            )
    return errors


def _train_batches(source, train_cfg, spe: int, epoch: int, skip: int, *, augment: bool):
    """Batches ``skip .. spe-1`` of ``epoch``: exactly ``spe - skip`` unless the data is tiny.

    ``augment``: the training augmentation (``train.augment`` resolved for the backbone
    kind by :meth:`~ttame_jax.config.TrainConfig.augments`).

    The step number alone fixes the data position (resume), so every epoch has
    exactly ``spe`` batches: if unreadable images make a pass shorter, it is
    topped up from a second pass over the same (seeded) epoch order.
    """
    passes = (
        source.batches(
            train_cfg.batch_size, epoch=epoch, shuffle=True, augment=augment, drop_remainder=True
        )
        for _ in range(2)
    )
    return itertools.islice(itertools.chain.from_iterable(passes), skip, spe)


def train_and_evaluate(config: Config, workdir: str, *, allow_config_change: bool = False) -> dict:
    """Trains T-TAME as described by ``config``, checkpointing into ``workdir``.

    Args:
      config: a :class:`ttame_jax.config.Config` (e.g. ``ttame_jax.configs.load("vit")``;
        a nested mapping or ConfigDict is converted with ``config.from_dict``).
      workdir: output directory (config.json, metrics.jsonl, checkpoints/). If
        it holds checkpoints, training resumes from the newest one that restores,
        provided ``config`` has the same result-changing fields
        (:func:`ttame_jax.rundir.check_config`).
      allow_config_change: continue a run whose loss / data / train settings differ
        (the new config goes to ``config.<n>.json``; the resumed step is kept).

    Returns:
      ``{"state": final TrainState, "train": last train record, "val": last val record}``.

    Raises:
      ValueError: bad config values or sizes (before any weights are loaded); a config
        that changes the workdir's run (:class:`~ttame_jax.rundir.ConfigChangeError`);
        no checkpoint restores (:class:`~ttame_jax.rundir.CheckpointError`).
      WorkdirLockedError: another process trains in ``workdir``.
      Preempted: SIGTERM (or a multi-host preemption notice) arrived; a checkpoint was
        saved at the next step boundary, the logs were flushed and the lock released.
        ``ttame train`` exits with :data:`EXIT_PREEMPTED` (75) then. The SIGTERM handler
        is installed only while this function runs; the previous one is restored.
      FloatingPointError: a non-finite loss or gradient (last good checkpoint kept).
    """
    config = from_dict(config)
    spec, model = preflight.validate(config)
    lead = jax.process_index() == 0
    with rundir.lock(workdir) if lead else contextlib.nullcontext(), _PreemptionWatch() as watch:
        return _train(config, spec, model, workdir, allow_config_change, lead, watch)


def _train(
    config: Config, spec, model, workdir: str, allow_change: bool, lead: bool, watch
) -> dict:
    from ttame_jax.backbones import load_pretrained
    from ttame_jax.data import build_source

    tc = config.train
    rundir.check_config(workdir, config, allow_change=allow_change, write=False)
    mesh = sharding.make_mesh()
    size = spec.input_size
    train_src = build_source(config.data, "train", input_size=size, seed=tc.seed)
    val_src = None
    if tc.validate_every_epoch:
        val_src = build_source(config.data, "val", input_size=size, seed=tc.seed)
    raise_errors(size_errors(tc, mesh, len(train_src), None if val_src is None else len(val_src)))
    rundir.check_config(workdir, config, allow_change=allow_change, write=lead)
    spe = steps_per_epoch(tc, len(train_src))
    augment = tc.augments(spec.kind)
    total = tc.epochs * spe
    schedule = OneCycle.from_train_config(tc, total)
    steps = build_steps(
        model, config.loss, schedule, float(tc.weight_decay), bool(tc.nesterov), mesh, tc.seed
    )

    bb = config.backbone
    backbone_vars = sharding.replicate(load_pretrained(bb.name, bb.weights, seed=bb.seed), mesh)
    state = sharding.replicate(steps.init(jax.random.key(tc.seed), backbone_vars), mesh)

    # Resume order: the newest step in workdir/checkpoints that restores (damaged
    # newer ones are set aside with a warning), else the fresh init of train.seed; the
    # restored step fixes the data position (epoch = step // steps_per_epoch, batch =
    # step % steps_per_epoch) and the PRNG keys.
    state = rundir.restore_state(workdir, state) or state
    step = int(state.step)
    manager = rundir.make_manager(
        workdir,
        keep=tc.keep_checkpoints,
        every=tc.checkpoint_every,
        epoch_steps=spe if tc.keep_epoch_checkpoints else 0,
    )
    # Log lines after the restored step belong to the interrupted run: they are redone.
    logged = drop_records_after(workdir, step, write=lead)

    rows = sharding.process_slice(tc.batch_size)
    put = lambda batch: sharding.shard_batch(batch["image"][rows], mesh)  # noqa: E731
    pending = device_loop.PendingMetrics()
    last = {"train": None, "val": None}
    halt = tc.halt_after_steps or total
    logger = MetricsLogger(
        workdir,
        total_steps=total,
        initial_step=step,
        batch_size=tc.batch_size,
        progress=tc.progress_bar,
        enabled=lead,
        tensorboard=tc.tensorboard,
    )
    logger.note(
        f"T-TAME on {spec.name}: {tc.epochs} epochs x {spe} steps of batch {tc.batch_size} on "
        f"{mesh.devices.size} device(s); "
        + (f"resuming from step {step}" if step else f"fresh start, seed {tc.seed}")
        + f"; augmentation {'on' if augment else 'off'} (train.augment={tc.augment!r})"
        + (
            "; backbone in train mode (model.backbone_mode='reference')"
            if model.cfg.backbone_mode == "reference"
            else ""
        )
        + (f"; backbone computes in {model.dtype}" if model.dtype != "float32" else "")
    )
    try:
        if val_src is not None and _missing_validation(logged, step, spe):
            # Interrupted between the epoch-end checkpoint and its validation.
            epoch = step // spe - 1
            args = (config, model, state, backbone_vars, val_src, steps.eval, mesh, epoch, step)
            last["val"] = logger.write(_validate(*args))
        for epoch in range(step // spe, tc.epochs):
            if step >= halt:
                break
            if watch.requested:  # before the first step or during validation
                _stop(manager, state, logger, workdir, step, pending)
            batches = _train_batches(train_src, tc, spe, epoch, step - epoch * spe, augment=augment)
            # The next batches are copied to the device while a step runs, and the host
            # reads the metrics only to log or save (device_loop): no sync per step.
            for images in device_loop.prefetch_to_device(batches, put):
                state, metrics = steps.train(state, backbone_vars, images)  # state donated
                step += 1
                pending.add(step, metrics)
                logger.step(step)
                # Multi-host preemption: every host calls this at every step and gets True
                # at the same step (always False on one process without jax.distributed).
                preempted = watch.requested or manager.reached_preemption(step)
                force = step % spe == 0 or step >= halt or preempted
                logs = step % tc.log_every == 0 or step == total
                if logs or force or manager.should_save(step):
                    # Every pending step is checked finite before anything is saved.
                    metrics = pending.settle(workdir)
                    if logs:
                        record = {"split": "train", "step": step, "epoch": epoch, **metrics}
                        last["train"] = logger.write({**record, "images_per_s": logger.rate(step)})
                    rundir.save_state(manager, state, force=force)
                if preempted:
                    _stop(manager, state, logger, workdir, step, pending)
                if step >= halt:
                    break
            if step >= halt and step < (epoch + 1) * spe:
                break  # halted mid-epoch; a later run resumes here
            if step < (epoch + 1) * spe:
                raise RuntimeError(
                    f"epoch {epoch} of the train split gave only {step - epoch * spe} of "
                    f"{spe} batches; too many unreadable images (see the log)"
                )
            if val_src is not None:
                last["val"] = _validate(
                    config, model, state, backbone_vars, val_src, steps.eval, mesh, epoch, step
                )
                logger.write(last["val"])
        if train_src.skipped:
            log.warning("skipped %d unreadable training images", train_src.skipped)
    finally:
        manager.wait_until_finished()
        manager.close()
        logger.close()
    return {"state": state, **last}


def _stop(manager, state, logger, workdir: str, step: int, pending):
    """Preemption at a step boundary: the checkpoint of ``step`` is written (forced, even
    mid-epoch), then :class:`Preempted` is raised (the caller's ``finally`` waits for the
    save and closes the logs; the lock is released on the way out)."""
    pending.settle(workdir)  # no-op if settled already; a non-finite step is never saved
    rundir.save_state(manager, state, force=True)  # no-op if it is being saved already
    manager.wait_until_finished()
    logger.note(f"preempted at step {step}: checkpoint saved; rerun to continue")
    raise Preempted(workdir, step)


def _missing_validation(records: list[dict], step: int, spe: int) -> bool:
    """Whether ``step`` ends an epoch whose validation record is not in ``records``."""
    if step == 0 or step % spe:
        return False
    return not any(r.get("split") == "val" and r.get("step") == step for r in records)


def _validate(config, model, state, backbone_vars, source, eval_step, mesh, epoch, step) -> dict:
    tc = config.train
    batches = lambda: val_metrics.val_batches(source, tc.batch_size, tc.val_steps)
    record = {"split": "val", "step": step, "epoch": epoch}
    record.update(
        val_metrics.validation_loss(state, backbone_vars, batches(), eval_step=eval_step, mesh=mesh)
    )
    if tc.val_adic_percent > 0:
        from ttame_jax.core.explainer import Explainer

        attn = {"params": state.params, "batch_stats": state.batch_stats}
        explainer = Explainer.from_model(model, backbone_vars, jax.device_get(attn))
        record.update(val_metrics.adic(explainer, batches(), tc.val_adic_percent))
    return {k: v if k in ("split", "step", "epoch") else float(v) for k, v in record.items()}
