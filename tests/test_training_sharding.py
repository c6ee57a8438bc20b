"""Data parallelism: 8 fake CPU devices give the same loss and updates as one device.

The device count is fixed when JAX starts, so the comparison runs in a
subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``; this
test process keeps its single device.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import json
    import jax
    import numpy as np
    jax.config.update("jax_default_matmul_precision", "highest")
    from ttame_jax.backbones import get_spec
    from ttame_jax.config import LossConfig
    from ttame_jax.core.model import build
    from ttame_jax.training import sharding
    from ttame_jax.training.schedule import OneCycle
    from ttame_jax.training.train_step import build_steps

    assert jax.device_count() == 8, jax.devices()
    spec = get_spec("synthetic_cnn")
    model = build(spec, None)
    # Backbone variables drawn with NumPy (no init compile): BN variances positive.
    shapes = jax.eval_shape(
        spec.builder().init, jax.random.key(0), np.zeros((1, 64, 64, 3), np.float32)
    )
    rng = np.random.default_rng(0)
    def draw(path, s):
        name = jax.tree_util.keystr(path)
        if "var" in name:
            return np.ones(s.shape, np.float32)
        return (0.1 * rng.standard_normal(s.shape)).astype(np.float32)
    backbone = jax.tree_util.tree_map_with_path(draw, shapes)
    images = np.random.default_rng(1).uniform(size=(2, 8, 64, 64, 3)).astype(np.float32)

    out = {}
    meshes = {"one": sharding.make_mesh(jax.devices()[:1]), "eight": sharding.make_mesh()}
    for name, mesh in meshes.items():
        steps = build_steps(model, LossConfig(), OneCycle(10, 0.05), 5e-4, True, mesh, 0)
        bb = sharding.replicate(backbone, mesh)
        state = sharding.replicate(steps.init(jax.random.key(0), bb), mesh)
        start = [np.asarray(v).ravel() for v in jax.tree.leaves((state.params, state.batch_stats))]
        losses, norms = [], []
        for x in images:
            batch = sharding.shard_batch(x, mesh)
            state, metrics = steps.train(state, bb, batch)
            losses.append(float(metrics["loss"]))
            norms.append(float(metrics["grad_norm"]))
        leaves = jax.tree.leaves((state.params, state.batch_stats))
        out[name] = {
            "loss": losses,
            "grad_norm": norms,
            "leaves": [np.asarray(v).ravel().tolist() for v in leaves],
            "change": max(float(np.abs(np.ravel(v) - s).max()) for v, s in zip(leaves, start)),
            "batch_devices": len(batch.sharding.device_set),
            "param_replicated": all(v.sharding.is_fully_replicated for v in leaves),
            "param_devices": len(leaves[0].sharding.device_set),
        }
    try:
        sharding.check_batch_size(6, sharding.make_mesh())
        out["batch_error"] = None
    except ValueError as err:
        out["batch_error"] = str(err)
    print("RESULT" + json.dumps(out))
    """
)


def test_eight_devices_match_one_device(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    script = tmp_path / "dp.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    out = json.loads(line[len("RESULT") :])
    one, eight = out["one"], out["eight"]
    assert (one["batch_devices"], eight["batch_devices"]) == (1, 8)
    assert eight["param_replicated"] and eight["param_devices"] == 8
    np.testing.assert_allclose(eight["loss"], one["loss"], rtol=1e-5)
    np.testing.assert_allclose(eight["grad_norm"], one["grad_norm"], rtol=1e-4)
    # Summation order differs across devices: allow 1e-5, far below the updates themselves.
    assert one["change"] > 1e-3 and eight["change"] > 1e-3
    for a, b in zip(eight["leaves"], one["leaves"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert "not divisible by the 8 devices" in out["batch_error"]
