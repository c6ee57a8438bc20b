"""benchmarks/device_check.py --quick runs on the CPU without the packages the GPU machine lacks.

The script runs in a subprocess whose ``ml_collections``, ``tqdm``, ``matplotlib`` and
``pytorch_grad_cam`` imports fail (``sys.modules[name] = None``), as on the accelerator
machine, and must write a JSON and a Markdown table with every row.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "device_check.py")
BLOCKED = ("ml_collections", "tqdm", "matplotlib", "pytorch_grad_cam")

WRAPPER = """
import json, runpy, sys
for name in {blocked!r}:
    sys.modules[name] = None  # "import name" raises ImportError, as if not installed
sys.argv = [{script!r}, *{args!r}]
try:
    runpy.run_path({script!r}, run_name="__main__")
finally:
    print("MODULES " + json.dumps(sorted(m for m in sys.modules if m.startswith("ttame_jax"))))
"""


@pytest.mark.slow
def test_quick_run_has_every_row(tmp_path):
    out = tmp_path / "out"
    args = ["--quick", "--out", str(out), "--backbones", "synthetic_cnn", "--budget-s", "3000"]
    code = WRAPPER.format(blocked=BLOCKED, script=SCRIPT, args=args)
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
    env.pop("OUT", None)
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    modules = json.loads(proc.stdout.rsplit("MODULES ", 1)[1])
    for heavy in ("ttame_jax.configs", "ttame_jax.training.trainer", "ttame_jax.evaluation"):
        assert not any(m == heavy or m.startswith(heavy + ".") for m in modules), heavy

    report = json.loads((out / "device_check.json").read_text())
    table = (out / "device_check.md").read_text()
    assert table in proc.stdout  # the table is printed too
    assert report["date"] and report["environment"]["jax_devices"]
    assert report["environment"]["versions"]["jax"]
    assert report["settings"]["quick"] is True

    rows = {(r["measurement"], r["impl"], r["dtype"]): r for r in report["rows"]}
    expected = {
        ("train step", "ours (jax)", "float32"): "ok",
        ("train step", "pytorch reference", "AMP float16"): "skipped: no CUDA",
        ("train step", "ours (jax)", "bfloat16 backbone"): "ok",  # model.backbone_dtype
        ("explain", "ours (jax)", "float32"): "ok",
        ("ROAD imputer", "ours (jax)", "float32"): "ok",
        ("data loader", "ours (threads)", "float32"): "ok",
        ("data loader", "torchvision DataLoader", "float32"): "ok",
    }
    assert set(rows) == set(expected)
    assert len(report["rows"]) == len(expected)  # one backbone, one batch size
    for key, status in expected.items():
        row = rows[key]
        assert row["status"] == status, (key, row.get("traceback", row["status"]))
        if status == "ok":
            assert row["images_per_s"] > 0 and row["compile_s"] >= 0
        measurement, impl, dtype = key
        assert f"| {measurement} |" in table and f"| {impl} | {dtype} |" in table
    assert len([line for line in table.splitlines() if line.startswith("| ")]) == 1 + len(expected)
