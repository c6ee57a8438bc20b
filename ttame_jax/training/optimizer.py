"""SGD with Nesterov momentum and weight decay, with torch ``optim.SGD`` semantics.

One step of ``torch.optim.SGD(momentum=mu, nesterov=True, weight_decay=wd,
dampening=0)`` on a parameter ``p`` with gradient ``g`` is::

    d = g + wd * p                 # decay added to the gradient, before momentum
    buf = mu * buf + d             # buf starts at zero (torch: buf = d on step 0)
    p = p - lr * (d + mu * buf)    # Nesterov look-ahead

Here ``lr`` and ``mu`` follow the :class:`~ttame_jax.training.schedule.OneCycle`
schedules (torch's ``OneCycleLR`` rewrites both in the param group every
step), and ``wd`` applies to every parameter except biases, like the reference
implementation's parameter groups (by name: leaves called ``bias`` are not
decayed; convolution kernels and BatchNorm scales are).
"""

from __future__ import annotations

import jax
import optax

from ttame_jax.training.schedule import OneCycle


def decay_mask(params):
    """``True`` for leaves that get weight decay: every leaf not named ``bias``."""

    def keep(path, _):
        last = path[-1]
        name = getattr(last, "key", getattr(last, "name", None))
        return name != "bias"

    return jax.tree_util.tree_map_with_path(keep, params)


def _torch_sgd(learning_rate, momentum, weight_decay, nesterov, mask):
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=mask),
        optax.trace(decay=momentum, nesterov=nesterov),
        optax.scale_by_learning_rate(learning_rate),
    )


def make_optimizer(
    schedule: OneCycle, *, weight_decay: float, nesterov: bool = True
) -> optax.GradientTransformation:
    """Torch-equivalent SGD whose learning rate and momentum follow ``schedule``.

    The current values live in ``opt_state.hyperparams["learning_rate"]`` and
    ``["momentum"]`` (the values used by the most recent update), see
    :func:`current_hyperparams`.

    Args:
      schedule: the OneCycle schedule (learning rate and momentum).
      weight_decay: L2 coefficient added to the gradients of non-bias leaves.
      nesterov: Nesterov momentum (the paper's recipe uses it).

    Returns:
      An optax transformation; ``init(params)`` and ``update(grads, state, params)``.
    """
    factory = optax.inject_hyperparams(_torch_sgd, static_args=("nesterov", "mask"))
    return factory(
        learning_rate=schedule.learning_rate,
        momentum=schedule.momentum,
        weight_decay=weight_decay,
        nesterov=nesterov,
        mask=decay_mask,
    )


def current_hyperparams(opt_state) -> dict[str, jax.Array]:
    """``{"lr": ..., "momentum": ...}`` used by the latest update of :func:`make_optimizer`."""
    hp = opt_state.hyperparams
    return {"lr": hp["learning_rate"], "momentum": hp["momentum"]}
