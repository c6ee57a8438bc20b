"""Keeping an accelerator busy: batches put on the device ahead of use, and the train
step's metrics kept on the device until the host needs them.

JAX dispatches a jitted step asynchronously: the call returns at once and the device
works through its queue while the host loads the next batch. Two things would stall
that queue at every step and are avoided here:

* reading a result on the host (``jax.device_get``, ``float()``, ``int()``):
  :class:`PendingMetrics` keeps each step's metrics as device arrays and fetches them
  all in one transfer only when the host needs them (a log line, a checkpoint, the end
  of an epoch); the non-finite check of every step happens then, before anything is
  saved;
* copying a batch to the device just before its step: :func:`prefetch_to_device` starts
  the (asynchronous) copies of the next ``size`` batches while the current step runs.

The host may run ahead of the device by at most :data:`MAX_IN_FLIGHT` steps (it then
waits for the oldest of them, without fetching anything), so batches queued on the
device stay bounded when the device is the slower side.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterable
from typing import Any

import jax
import numpy as np

# Steps dispatched but not known to be finished; the host waits for the oldest beyond
# this many (the device still has the newer ones queued, so it never idles for it).
MAX_IN_FLIGHT = 3
# Batches whose host-to-device copy is started before they are needed.
PREFETCH = 2


def prefetch_to_device(batches: Iterable, put: Callable[[Any], Any], size: int = PREFETCH):
    """Yields ``put(batch)`` for each batch, with the next ``size`` ``put`` calls already made.

    Args:
      batches: host batches (any iterable; read ``size`` items ahead of the consumer).
      put: host batch -> device array(s), e.g. ``sharding.shard_batch`` of its rows;
        ``jax.device_put`` and friends return at once and copy in the background.
      size: batches in flight ahead of the one being used (>= 1).
    """
    if size < 1:
        raise ValueError(f"prefetch size must be >= 1, got {size}")
    iterator = iter(batches)
    queue = collections.deque(put(b) for b in itertools.islice(iterator, size))
    while queue:
        yield queue.popleft()
        queue.extend(put(b) for b in itertools.islice(iterator, 1))


class PendingMetrics:
    """The metrics of dispatched train steps, on the device until :meth:`settle`.

    Each step's metrics must hold a boolean scalar ``"finite"`` (the train step's "loss
    and gradient are finite"; a non-finite step leaves the state unchanged).

    Args:
      max_in_flight: steps the host may run ahead of the device (see the module doc).
    """

    def __init__(self, max_in_flight: int = MAX_IN_FLIGHT):
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[int, dict]] = []

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, step: int, metrics: dict) -> None:
        """Records the (device) metrics of ``step``; waits, if needed, until the device
        has finished the step :data:`MAX_IN_FLIGHT` steps before it (no transfer)."""
        self._pending.append((step, metrics))
        if len(self._pending) > self._max_in_flight:
            jax.block_until_ready(self._pending[-self._max_in_flight - 1][1]["finite"])

    def settle(self, workdir: str) -> dict | None:
        """Fetches every pending step's metrics (one transfer) and checks them in order.

        Returns:
          the host metrics (NumPy scalars, without ``"finite"``) of the newest step;
          ``None`` if nothing was pending.

        Raises:
          FloatingPointError: the first step with a non-finite loss or gradient (its
            number, loss and gradient norm). Its update was not applied and nothing
            after it has been saved: the last checkpoint in ``workdir`` is good.
        """
        if not self._pending:
            return None
        pending, self._pending = self._pending, []
        flags, last = jax.device_get(([m["finite"] for _, m in pending], pending[-1][1]))
        for (step, metrics), finite in zip(pending, flags, strict=True):
            if not bool(np.asarray(finite)):
                metrics = jax.device_get(metrics)
                raise FloatingPointError(
                    f"non-finite loss or gradient at step {step} (loss "
                    f"{float(metrics['loss'])}, grad norm {float(metrics['grad_norm'])}); "
                    f"stopped without saving it. The last good checkpoint in "
                    f"{workdir}/checkpoints is intact; lower train.max_lr or check the data"
                )
        return {k: v for k, v in last.items() if k != "finite"}
