"""The train state and the jitted T-TAME train / validation steps.

Only the attention mechanism is trained: its parameters, BatchNorm statistics
and optimizer state form :class:`TrainState`. The frozen backbone variables
are a separate, non-donated argument, so the large backbone buffers are
neither copied nor invalidated by a step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from ttame_jax import xla_cpu
from ttame_jax.training import sharding
from ttame_jax.training.optimizer import current_hyperparams, make_optimizer
from ttame_jax.training.schedule import OneCycle


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training (checkpointed as one unit).

    Attributes:
      step: int32 scalar, number of optimizer steps taken.
      params: attention-mechanism parameters.
      batch_stats: attention BatchNorm running statistics.
      opt_state: optax state of :func:`~ttame_jax.training.optimizer.make_optimizer`.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any


def make_init(model, tx: optax.GradientTransformation, example_shape) -> Callable:
    """Builds ``init(rng, backbone_vars) -> TrainState``, jitted (one compile, not one per op).

    Args:
      model: the T-TAME object.
      tx: the optimizer.
      example_shape: ``(B, S, S, 3)``; only the shape of the example images matters.
    """

    @jax.jit
    def init(rng, backbone_vars):
        attn_vars = model.init(rng, backbone_vars, jnp.zeros(example_shape, jnp.float32))
        params = attn_vars["params"]
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats=attn_vars.get("batch_stats", {}),
            opt_state=tx.init(params),
        )

    return init


def step_rng(seed: int, step, stream: int = 0) -> jax.Array:
    """PRNG key of one step: a pure function of (seed, step), so a resumed run draws alike.

    Only ``loss.variant="paper"`` (the random classes of Ψ) and
    ``model.backbone_mode="reference"`` (VGG-16's dropout masks) draw random numbers;
    ``stream`` separates training (0) from validation (1).
    """
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), stream), step)


def make_train_step(
    model, loss_cfg, tx: optax.GradientTransformation, mesh: Mesh, *, seed: int = 0
) -> Callable:
    """Builds ``train_step(state, backbone_vars, images) -> (state, metrics)``, jitted.

    The step computes the T-TAME loss (``model.loss_fn``), its gradient with
    respect to the attention parameters and one optimizer update. If the loss
    or the gradient is not finite, the returned state is the input state
    unchanged and ``metrics["finite"]`` is ``False``: a NaN never reaches the
    parameters, so a caller can stop with the last good state intact.

    Args:
      model: the T-TAME object of :func:`ttame_jax.core.model.build`.
      loss_cfg: the ``config.loss`` block (static, closed over).
      tx: the optimizer.
      mesh: data mesh; state and backbone replicated, images batch-sharded.
      seed: seed of the per-step PRNG keys (see :func:`step_rng`).

    Returns:
      A jitted function; ``state`` (argument 0) is donated. ``images`` is the
      ``(B, S, S, 3)`` float32 batch in [0, 1]. ``metrics`` holds ``loss``, the
      loss terms, ``lr``, ``momentum``, ``grad_norm`` and ``finite``.
    """

    def step(state: TrainState, backbone_vars, images):
        def loss(params):
            rng = step_rng(seed, state.step)
            return model.loss_fn(params, state.batch_stats, backbone_vars, images, loss_cfg, rng)

        (value, (terms, new_stats)), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new = TrainState(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            batch_stats=new_stats,
            opt_state=opt_state,
        )
        finite = jnp.isfinite(value) & jnp.isfinite(grad_norm)
        new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)
        metrics = {
            "loss": value,
            **terms,
            **current_hyperparams(opt_state),
            "grad_norm": grad_norm,
            "finite": finite,
        }
        return new, metrics

    repl, data = sharding.replicated(mesh), sharding.batch_sharded(mesh)
    return xla_cpu.jit(
        step,
        in_shardings=(repl, repl, data),
        out_shardings=(repl, repl),
        donate_argnums=0,
    )


def make_eval_step(model, loss_cfg, mesh: Mesh, *, seed: int = 0) -> Callable:
    """Builds ``eval_step(state, backbone_vars, images, batch_index) -> metrics`` (batch sums).

    Returns the loss and its terms multiplied by the batch size, plus
    ``count``, so the host can average over batches of different sizes. The
    state is not modified (BatchNorm statistics computed here are dropped). The backbone
    is in eval mode here whatever ``config.model.backbone_mode`` says (as the reference's
    validation was).
    """

    def step(state: TrainState, backbone_vars, images, batch_index):
        rng = step_rng(seed, batch_index, stream=1)
        value, (terms, _) = model.loss_fn(
            state.params,
            state.batch_stats,
            backbone_vars,
            images,
            loss_cfg,
            rng,
            backbone_train=False,
        )
        n = images.shape[0]
        sums = {k: v * n for k, v in {"loss": value, **terms}.items()}
        return {**sums, "count": jnp.asarray(n, jnp.float32)}

    repl, data = sharding.replicated(mesh), sharding.batch_sharded(mesh)
    return xla_cpu.jit(step, in_shardings=(repl, repl, data, repl), out_shardings=repl)


class Steps(NamedTuple):
    """The optimizer and the jitted functions of one training setup."""

    tx: optax.GradientTransformation
    init: Callable
    train: Callable
    eval: Callable


@functools.lru_cache(maxsize=4)
def build_steps(
    model,
    loss_cfg,
    schedule: OneCycle,
    weight_decay: float,
    nesterov: bool,
    mesh: Mesh,
    seed: int,
) -> Steps:
    """Optimizer, init, train and eval steps; cached, so a re-run in the same process
    (a resumed run, a sweep, a test) reuses the compiled functions.

    All arguments must be hashable (``loss_cfg``: a frozen ``LossConfig``).
    """
    tx = make_optimizer(schedule, weight_decay=weight_decay, nesterov=nesterov)
    size = model.spec.input_size
    return Steps(
        tx=tx,
        init=make_init(model, tx, (1, size, size, 3)),
        train=make_train_step(model, loss_cfg, tx, mesh, seed=seed),
        eval=make_eval_step(model, loss_cfg, mesh, seed=seed),
    )
