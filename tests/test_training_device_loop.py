"""training.device_loop: batches prefetched to the device in order, metrics checked late."""

import jax.numpy as jnp
import numpy as np
import pytest

from ttame_jax.training import device_loop


def test_prefetch_yields_every_batch_in_order_and_reads_only_size_ahead():
    read, put = [], []

    def batches():
        for i in range(5):
            read.append(i)
            yield i

    def to_device(b):
        put.append(b)
        return jnp.asarray(b)

    it = device_loop.prefetch_to_device(batches(), to_device, size=2)
    first = next(it)
    assert int(first) == 0 and read == [0, 1] and put == [0, 1]  # 2 in flight, no more
    assert [int(x) for x in it] == [1, 2, 3, 4]
    assert put == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="prefetch size must be >= 1"):
        next(device_loop.prefetch_to_device([1], to_device, size=0))


def _metrics(loss: float):
    loss = jnp.float32(loss)
    return {"loss": loss, "grad_norm": loss * 2, "finite": jnp.isfinite(loss)}


def test_settle_returns_the_newest_metrics_on_the_host():
    pending = device_loop.PendingMetrics(max_in_flight=2)
    assert pending.settle("w") is None
    for step, loss in enumerate([1.0, 2.0, 3.0, 4.0], start=1):
        pending.add(step, _metrics(loss))
    assert len(pending) == 4
    out = pending.settle("w")
    assert len(pending) == 0 and set(out) == {"loss", "grad_norm"}
    assert not hasattr(out["loss"], "devices")  # fetched: NumPy, not a jax.Array
    assert float(out["loss"]) == 4.0 and float(out["grad_norm"]) == 8.0


def test_settle_names_the_first_non_finite_step_even_if_later_ones_are_finite():
    pending = device_loop.PendingMetrics()
    for step, loss in ((5, 1.0), (6, np.nan), (7, np.inf), (8, 1.0)):
        pending.add(step, _metrics(loss))
    with pytest.raises(FloatingPointError, match=r"at step 6 \(loss nan, grad norm nan\).*wd/"):
        pending.settle("wd")
    assert len(pending) == 0
