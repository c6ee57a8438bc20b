"""Data parallelism: a 1-D device mesh, batch sharded, parameters replicated.

One process drives all of its local devices. Several hosts join with
:func:`initialize_multihost` (``jax.distributed.initialize()``) before anything
else touches JAX; every process then builds the same global mesh over
``jax.devices()``, keeps its own rows of each global batch
(:func:`process_slice`) and :func:`shard_batch` assembles the global array.
On a single host all of this reduces to ``jax.device_put``. (The data sources
are not host-sharded yet: each host decodes the whole global batch and keeps
its rows, which costs decoding time but keeps the order exact.)

Multi-host use (one command per host, e.g. on a TPU pod slice or a Slurm job)::

    python train.py --config=configs/vit.py --workdir=/shared/runs/vit --multihost

The workdir must be a directory every host can reach.

``jax.distributed.initialize()`` reads the coordinator address, process count
and process id from the cluster environment (TPU metadata, Slurm, Open MPI) or
from ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize_multihost(enabled: bool | None = None) -> None:
    """Calls ``jax.distributed.initialize()`` when asked or when the env says so.

    Args:
      enabled: ``True`` to initialise, ``False`` to skip; ``None`` initialises
        only when ``JAX_COORDINATOR_ADDRESS`` is set in the environment.
    """
    if enabled is None:
        enabled = bool(os.environ.get("JAX_COORDINATOR_ADDRESS"))
    if enabled:
        jax.distributed.initialize()


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``"data"`` over ``devices`` (default: all devices)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device (parameters, opt state)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding that splits the leading (batch) axis over the ``data`` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raises ``ValueError`` unless the global batch splits evenly over devices and hosts."""
    n_dev = mesh.devices.size
    if batch_size % n_dev:
        raise ValueError(
            f"train.batch_size={batch_size} is not divisible by the {n_dev} devices in use; "
            f"choose a multiple of {n_dev} (e.g. --config.train.batch_size="
            f"{max(n_dev, batch_size // n_dev * n_dev)})"
        )
    if batch_size % jax.process_count():
        raise ValueError(
            f"train.batch_size={batch_size} is not divisible by the {jax.process_count()} hosts"
        )


def process_slice(batch_size: int) -> slice:
    """Rows of a global batch that this process loads (all rows on one host)."""
    per_host = batch_size // jax.process_count()
    start = jax.process_index() * per_host
    return slice(start, start + per_host)


def replicate(tree, mesh: Mesh):
    """Places every leaf of ``tree`` on all devices of ``mesh``."""
    return jax.device_put(tree, replicated(mesh))


def shard_batch(local_rows: np.ndarray, mesh: Mesh) -> jax.Array:
    """Global batch array from this process's rows, split over the ``data`` axis.

    Args:
      local_rows: ``(B / num_processes, ...)`` host array (this process's slice).
      mesh: the data mesh.

    Returns:
      A ``(B, ...)`` ``jax.Array`` sharded along its first axis.
    """
    return jax.make_array_from_process_local_data(batch_sharded(mesh), np.asarray(local_rows))
