"""OneCycle learning-rate and momentum schedules, equal to torch's ``OneCycleLR``.

The paper trains with ``torch.optim.lr_scheduler.OneCycleLR(anneal_strategy="cos",
three_phase=False)`` stepped once per batch, with ``cycle_momentum=True``. That
scheduler defines two phases over ``total_steps`` optimizer steps (``t`` counts
optimizer steps from 0):

* phase 1, ``0 <= t <= e1`` with ``e1 = pct_start * total_steps - 1`` (a float):
  lr ``initial -> max`` and momentum ``max_momentum -> base_momentum``;
* phase 2, ``e1 < t``, up to ``e2 = total_steps - 1``: lr ``max -> min`` and
  momentum ``base_momentum -> max_momentum``;

with ``initial = max_lr / div_factor``, ``min = initial / final_div_factor`` and
cosine annealing ``anneal(a, b, p) = b + (a - b) / 2 * (cos(pi * p) + 1)`` where
``p = (t - start) / (end - start)`` is the fraction of the current phase. The
value at ``t`` is the one used by the ``t``-th optimizer step (torch computes it
in the scheduler's constructor for ``t = 0`` and in ``scheduler.step()`` after
each optimizer step).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class OneCycle:
    """The OneCycle hyperparameters (names and defaults of torch's ``OneCycleLR``).

    Attributes:
      total_steps: number of optimizer steps of the whole run.
      max_lr: peak learning rate.
      pct_start: fraction of the steps spent increasing the learning rate.
      div_factor: ``initial_lr = max_lr / div_factor``.
      final_div_factor: ``min_lr = initial_lr / final_div_factor``.
      base_momentum: momentum at the learning-rate peak.
      max_momentum: momentum at the start and the end.
    """

    total_steps: int
    max_lr: float
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    base_momentum: float = 0.85
    max_momentum: float = 0.95

    def __post_init__(self):
        check_onecycle(self)

    @classmethod
    def from_train_config(cls, train_cfg, total_steps: int) -> OneCycle:
        """The schedule of ``config.train`` (a :class:`ttame_jax.config.TrainConfig`)."""
        names = [f.name for f in dataclasses.fields(cls) if f.name != "total_steps"]
        return cls(total_steps=total_steps, **{n: getattr(train_cfg, n) for n in names})

    @property
    def initial_lr(self) -> float:
        return self.max_lr / self.div_factor

    @property
    def min_lr(self) -> float:
        return self.initial_lr / self.final_div_factor

    @property
    def phase1_end(self) -> float:
        """``e1``: the (fractional) step at which the learning rate peaks."""
        return float(self.pct_start * self.total_steps) - 1

    def learning_rate(self, step):
        """Learning rate used by optimizer step ``step`` (int or int array)."""
        return self._anneal(step, (self.initial_lr, self.max_lr), (self.max_lr, self.min_lr))

    def momentum(self, step):
        """Momentum used by optimizer step ``step``; cycles inversely to the lr."""
        return self._anneal(
            step,
            (self.max_momentum, self.base_momentum),
            (self.base_momentum, self.max_momentum),
        )

    def _anneal(self, step, phase1: tuple[float, float], phase2: tuple[float, float]):
        t = jnp.asarray(step, jnp.float32)
        e1, e2 = self.phase1_end, float(self.total_steps - 1)
        in_phase1 = t <= e1
        # Fraction of the current phase; torch uses start 0 for phase 1 and e1 for phase 2.
        p1 = t / e1 if e1 != 0 else jnp.zeros_like(t)
        p2 = (t - e1) / (e2 - e1)
        pct = jnp.where(in_phase1, p1, p2)
        start = jnp.where(in_phase1, phase1[0], phase2[0])
        end = jnp.where(in_phase1, phase1[1], phase2[1])
        return end + (start - end) / 2.0 * (jnp.cos(jnp.pi * pct) + 1.0)


def check_onecycle(sched: OneCycle) -> None:
    """Raises ``ValueError`` for values torch's ``OneCycleLR`` rejects or divides by zero on."""
    if not isinstance(sched.total_steps, int) or sched.total_steps <= 0:
        raise ValueError(
            f"OneCycle total_steps must be a positive integer, got {sched.total_steps!r}; "
            "check train.epochs, train.batch_size and the dataset size"
        )
    if not 0.0 <= sched.pct_start <= 1.0:
        raise ValueError(f"train.pct_start must lie in [0, 1], got {sched.pct_start}")
    for name in ("max_lr", "div_factor", "final_div_factor"):
        if not getattr(sched, name) > 0:
            raise ValueError(f"OneCycle {name} must be > 0, got {getattr(sched, name)}")
    if not 0.0 <= sched.base_momentum <= sched.max_momentum < 1.0:
        raise ValueError(
            "momentum must satisfy 0 <= base_momentum <= max_momentum < 1, got "
            f"base={sched.base_momentum}, max={sched.max_momentum}"
        )
    e1, e2 = sched.phase1_end, sched.total_steps - 1
    if e1 == 0 or e1 == e2:
        raise ValueError(
            f"pct_start={sched.pct_start} with total_steps={sched.total_steps} puts the lr "
            "peak on a phase boundary, where torch's OneCycleLR divides by zero; change "
            "train.pct_start or the number of steps"
        )
