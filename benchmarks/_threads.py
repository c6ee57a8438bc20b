"""``--threads N`` for the benchmark scripts: the same CPU thread count for XLA and torch.

XLA reads ``XLA_FLAGS`` once, when jax initialises its CPU client, so :func:`pin`
must run before ``import jax``; torch's intra-op thread count is set by
:func:`pin_torch` after ``import torch``. ``N = 1`` gives both libraries one
thread (on a shared, oversubscribed CPU torch's OpenMP threads spin-wait and slow
down many times over, which would make any ratio meaningless); ``N = 0`` keeps each
library's defaults (XLA: every core; torch: ``torch.get_num_threads()``); other
``N`` set torch only (XLA's CPU client has no thread-count option besides 1).
"""

from __future__ import annotations

import os


def from_argv(argv, default: int = 1) -> int:
    """The value of ``--threads`` in ``argv`` (``default`` when absent)."""
    for i, arg in enumerate(argv):
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
        if arg == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
    return default


def pin(threads: int) -> None:
    """Before ``import jax``: one XLA CPU thread when ``threads == 1``."""
    if threads == 1:  # no Eigen thread pool, one intra-op thread
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        )


def pin_torch(threads: int) -> None:
    """After ``import torch``: ``threads`` intra-op threads (0: torch's default)."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
