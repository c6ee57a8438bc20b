"""``train_and_evaluate(config, workdir)``: the T-TAME training loop.

Start-up order (every cheap check before anything slow): validate the config
-> device mesh and batch split -> data sources (missing dataset: error) ->
schedule and optimizer -> backbone weights (missing weights: error) -> initial
state -> resume -> train, log, checkpoint, validate each epoch.
"""

from __future__ import annotations

import itertools
import logging
import os

import jax

from ttame_jax import rundir
from ttame_jax.config import Config, from_dict, to_dict
from ttame_jax.training import preflight, sharding, val_metrics
from ttame_jax.training.metrics_log import MetricsLogger
from ttame_jax.training.schedule import OneCycle
from ttame_jax.training.train_step import build_steps

log = logging.getLogger(__name__)

# Config sections that must match for a workdir to be resumed.
_RESUME_KEYS = ("backbone", "model")


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


def _check_resumable(workdir: str, config: Config) -> None:
    """Refuses to resume a workdir whose checkpoints belong to another model."""
    if not os.path.exists(os.path.join(workdir, rundir.CONFIG_FILE)):
        return
    old, new = to_dict(rundir.read_config(workdir)), to_dict(config)
    for key in _RESUME_KEYS:
        if old[key] != new[key]:
            raise ValueError(
                f"{workdir} holds a run with a different config.{key} ({old[key]} vs "
                f"{new[key]}); use a new --workdir or delete {workdir}"
            )


def _train_batches(source, train_cfg, spe: int, epoch: int, skip: int):
    """Batches ``skip .. spe-1`` of ``epoch``: exactly ``spe - skip`` unless the data is tiny.

    The step number alone fixes the data position (resume), so every epoch has
    exactly ``spe`` batches: if unreadable images make a pass shorter, it is
    topped up from a second pass over the same (seeded) epoch order.
    """
    passes = (
        source.batches(
            train_cfg.batch_size, epoch=epoch, shuffle=True, augment=True, drop_remainder=True
        )
        for _ in range(2)
    )
    return itertools.islice(itertools.chain.from_iterable(passes), skip, spe)


def train_and_evaluate(config: Config, workdir: str) -> dict:
    """Trains T-TAME as described by ``config``, checkpointing into ``workdir``.

    Args:
      config: a :class:`ttame_jax.config.Config` (e.g. ``ttame_jax.configs.load("vit")``;
        a nested mapping or ConfigDict is converted with ``config.from_dict``).
      workdir: output directory (config.json, metrics.jsonl, checkpoints/). If
        it holds checkpoints, training resumes from the latest.

    Returns:
      ``{"state": final TrainState, "train": last train record, "val": last val record}``.

    Raises:
      ValueError: bad config values (before any data or weights are loaded).
      FloatingPointError: a non-finite loss or gradient (last good checkpoint kept).
    """
    from ttame_jax.backbones import load_pretrained
    from ttame_jax.data import build_source

    config = from_dict(config)
    spec, model = preflight.validate(config)
    tc = config.train
    mesh = sharding.make_mesh()
    sharding.check_batch_size(tc.batch_size, mesh)
    _check_resumable(workdir, config)
    if jax.process_index() == 0:
        rundir.write_config(workdir, config)

    size = spec.input_size
    train_src = build_source(config.data, "train", input_size=size, seed=tc.seed)
    val_src = None
    if tc.validate_every_epoch:
        val_src = build_source(config.data, "val", input_size=size, seed=tc.seed)
    spe = steps_per_epoch(tc, len(train_src))
    total = tc.epochs * spe
    schedule = OneCycle.from_train_config(tc, total)
    steps = build_steps(
        model, config.loss, schedule, float(tc.weight_decay), bool(tc.nesterov), mesh, tc.seed
    )

    bb = config.backbone
    backbone_vars = sharding.replicate(load_pretrained(bb.name, bb.weights, seed=bb.seed), mesh)
    state = sharding.replicate(steps.init(jax.random.key(tc.seed), backbone_vars), mesh)

    manager = rundir.make_manager(workdir, keep=tc.keep_checkpoints, every=tc.checkpoint_every)
    # Resume order: the latest step in workdir/checkpoints if any, else the fresh
    # init of train.seed; the restored step fixes the data position (epoch =
    # step // steps_per_epoch, batch = step % steps_per_epoch) and the PRNG keys.
    state = rundir.restore_state(manager, state) or state
    step = int(state.step)

    rows = sharding.process_slice(tc.batch_size)
    last = {"train": None, "val": None}
    halt = tc.halt_after_steps or total
    logger = MetricsLogger(
        workdir,
        total_steps=total,
        initial_step=step,
        batch_size=tc.batch_size,
        progress=tc.progress_bar,
        enabled=jax.process_index() == 0,
    )
    logger.note(
        f"T-TAME on {spec.name}: {tc.epochs} epochs x {spe} steps of batch {tc.batch_size} on "
        f"{mesh.devices.size} device(s); "
        + (f"resuming from step {step}" if step else f"fresh start, seed {tc.seed}")
    )
    try:
        for epoch in range(step // spe, tc.epochs):
            if step >= halt:
                break
            for batch in _train_batches(train_src, tc, spe, epoch, step - epoch * spe):
                images = sharding.shard_batch(batch["image"][rows], mesh)
                state, metrics = steps.train(state, backbone_vars, images)
                metrics = jax.device_get(metrics)
                if not metrics.pop("finite"):
                    raise FloatingPointError(
                        f"non-finite loss or gradient at step {step + 1} (loss "
                        f"{float(metrics['loss'])}, grad norm {float(metrics['grad_norm'])}); "
                        f"stopped without saving it. The last good checkpoint in "
                        f"{workdir}/checkpoints is intact; lower train.max_lr or check the data"
                    )
                step += 1
                rate = logger.step(step)
                if step % tc.log_every == 0 or step == total:
                    record = {"split": "train", "step": step, "epoch": epoch, **metrics}
                    last["train"] = logger.write({**record, "images_per_s": rate})
                rundir.save_state(manager, state, force=step % spe == 0 or step >= halt)
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
