"""Supervised training of a backbone from scratch (the synthetic benchmark's classifiers).

T-TAME explains a *frozen, trained* classifier. With no pretrained weights for
the synthetic backbones, :func:`train_classifier` trains one on its data
source: AdamW, linear warm-up then cosine decay, softmax cross-entropy, flip
augmentation, a jitted step that donates the train state. The result is written
as ``workdir/<backbone>.msgpack`` (``flax.serialization.to_bytes`` of
``{"params", "batch_stats"}``, what ``load_pretrained(name, weights=path)``
reads) and ``workdir/<backbone>.json`` (accuracy and run facts).
"""

from __future__ import annotations

import functools
import json
import os
import time

import flax
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ttame_jax import backbones, xla_cpu
from ttame_jax.core.masking import normalize
from ttame_jax.data import build_source
from ttame_jax.progress import progress_bar


@flax.struct.dataclass
class ClassifierState:
    """Everything that changes during training; ``batch_stats`` is ``{}`` without BatchNorm."""

    step: jax.Array
    params: dict
    batch_stats: dict
    opt_state: optax.OptState


def _variables(params, batch_stats) -> dict:
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def transplant(variables: dict, source: dict) -> dict:
    """``variables`` with every top-level module that ``source`` also has copied from it.

    Raises:
      ValueError: a shared module has other shapes, or no module is shared.
    """
    out, shared = {}, []
    for col, modules in variables.items():
        out[col] = dict(modules)
        for name, tree in modules.items():
            if name not in source.get(col, {}):
                continue
            want = jax.tree.map(jnp.shape, tree)
            got = jax.tree.map(jnp.shape, source[col][name])
            if want != got:
                raise ValueError(f"cannot start {col}/{name} from a module of other shapes")
            out[col][name] = jax.tree.map(jnp.asarray, source[col][name])
            shared.append(f"{col}/{name}")
    if not shared:
        raise ValueError(
            f"init_from shares no module with this backbone (it has {sorted(variables['params'])})"
        )
    return out


def make_adamw(lr: float, steps: int, weight_decay: float) -> optax.GradientTransformation:
    """AdamW whose learning rate warms up over 10 % of ``steps``, then decays (cosine) to 0."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, lr, warmup_steps=max(1, steps // 10), decay_steps=max(2, steps)
    )
    return optax.adamw(schedule, weight_decay=weight_decay)


def make_steps(model, tx, mean, std):
    """The jitted ``train_step(state, images, labels) -> (state, metrics)`` and
    ``predict(variables, images) -> logits`` for ``images`` ``(B, S, S, 3)`` in [0, 1]."""
    mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)

    @functools.partial(xla_cpu.jit, donate_argnums=0)
    def train_step(state: ClassifierState, images, labels):
        def loss_fn(params):
            logits, updates = model.apply(
                _variables(params, state.batch_stats),
                normalize(images, mean, std),
                train=True,
                mutable=["batch_stats"],
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            return loss, (logits, updates.get("batch_stats", {}))

        (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = ClassifierState(state.step + 1, params, batch_stats, opt_state)
        metrics = {
            "loss": loss,
            "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
            "grad_norm": optax.tree.norm(grads),
        }
        return new, metrics

    @xla_cpu.jit
    def predict(variables, images):
        return model.apply(variables, normalize(images, mean, std))

    return train_step, predict


def accuracy(predict, variables, source, batch_size: int) -> dict[str, float]:
    """Top-1 accuracy on the single-object images of ``source``; on two-object images
    (``label2 >= 0``) the share whose top-1 is one of the two classes."""
    hits, count, hits2, count2 = 0, 0, 0, 0
    for batch in source.batches(batch_size):
        pred = np.asarray(predict(variables, jnp.asarray(batch["image"])).argmax(-1))
        label2 = batch.get("label2", np.full_like(batch["label"], -1))
        one = label2 < 0
        hits += int(np.sum(pred[one] == batch["label"][one]))
        count += int(one.sum())
        hits2 += int(np.sum((pred[~one] == batch["label"][~one]) | (pred[~one] == label2[~one])))
        count2 += int((~one).sum())
    out = {"accuracy": hits / max(count, 1), "num_images": count}
    if count2:
        out.update(two_object_hit=hits2 / count2, num_two_object_images=count2)
    return out


def train_classifier(
    backbone_name: str,
    data_cfg,
    *,
    steps: int,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 0.05,
    seed: int = 0,
    workdir: str | None = None,
    augment: bool = True,
    progress: bool = True,
    init_from: dict | None = None,
):
    """Trains ``backbone_name`` from random init on ``data_cfg``'s train split.

    Args:
      backbone_name: a registered backbone, e.g. ``"synthetic_cnn"``.
      data_cfg: ``config.data`` (a :class:`ttame_jax.config.DataConfig`).
      steps: optimizer steps (the train split is re-shuffled every epoch).
      batch_size: images per step.
      lr: peak learning rate of AdamW.
      weight_decay: AdamW's decoupled weight decay.
      seed: seeds the initialisation, the data and the shuffling.
      workdir: where ``<backbone_name>.msgpack`` and ``.json`` go (``None``: nowhere).
      augment: random flips of the training images.
      progress: show a progress bar.
      init_from: trained variables of another backbone whose top-level modules with the
        same name and shapes start this one (e.g. a hybrid ViT's stem from
        ``synthetic_cnn``); the others keep the random init.

    Returns:
      ``(variables, test_accuracy)``: the trained ``{"params"[, "batch_stats"]}``
      and the top-1 accuracy on the single-object test images.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"need steps >= 1 and batch_size >= 1, got {steps} and {batch_size}")
    spec = backbones.get_spec(backbone_name)
    model = spec.builder()
    size = spec.input_size
    train = build_source(data_cfg, "train", input_size=size, seed=seed)
    test = build_source(data_cfg, "test", input_size=size, seed=seed)
    if train.num_classes != spec.num_classes:
        raise ValueError(
            f"{backbone_name} has {spec.num_classes} outputs but the data has "
            f"{train.num_classes} classes; pick a backbone made for this data"
        )

    t0 = time.perf_counter()
    variables = jax.jit(model.init)(jax.random.key(seed), jnp.zeros((1, size, size, 3)))
    if init_from is not None:
        variables = transplant(variables, init_from)
    tx = make_adamw(lr, steps, weight_decay)
    params, batch_stats = variables["params"], variables.get("batch_stats", {})
    state = ClassifierState(jnp.zeros((), jnp.int32), params, batch_stats, tx.init(params))
    train_step, predict = make_steps(model, tx, spec.mean, spec.std)

    bar = progress_bar(
        total=steps, desc=f"train {backbone_name}", disable=not progress, unit="step"
    )
    epoch, step, metrics = 0, 0, {}
    while step < steps:
        for batch in train.batches(
            batch_size, epoch=epoch, shuffle=True, augment=augment, drop_remainder=True
        ):
            state, metrics = train_step(
                state, jnp.asarray(batch["image"]), jnp.asarray(batch["label"])
            )
            step += 1
            bar.update(1)
            if step % 20 == 0 or step == steps:
                metrics = {k: float(v) for k, v in metrics.items()}
                if not np.isfinite(metrics["loss"]):
                    raise FloatingPointError(
                        f"training {backbone_name} diverged at step {step} (loss "
                        f"{metrics['loss']}); lower lr (now {lr})"
                    )
                bar.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['accuracy']:.2f}")
            if step == steps:
                break
        epoch += 1
    bar.close()
    train_seconds = time.perf_counter() - t0

    variables = _variables(state.params, state.batch_stats)
    result = accuracy(predict, variables, test, batch_size=256)
    if progress:
        print(f"{backbone_name}: test accuracy {result['accuracy']:.4f} ({train_seconds:.1f} s)")
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, f"{backbone_name}.msgpack"), "wb") as f:
            f.write(flax.serialization.to_bytes(variables))
        facts = {
            "backbone": backbone_name,
            "test": result,
            "train_accuracy_last_batch": metrics.get("accuracy"),
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "seed": seed,
            "train_images": len(train),
            "train_seconds": round(train_seconds, 2),
        }
        with open(os.path.join(workdir, f"{backbone_name}.json"), "w") as f:
            json.dump(facts, f, indent=2)
    return variables, result["accuracy"]
