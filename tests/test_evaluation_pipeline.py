"""evaluate() end to end on a tiny checkpoint: report files, numbers, resume, failed reruns."""

import json
import os
import types

import jax
import numpy as np
import pytest

from ttame_jax import backbones, configs, rundir
from ttame_jax.backbones import get_spec
from ttame_jax.config import with_overrides
from ttame_jax.core.explainer import load
from ttame_jax.core.model import build
from ttame_jax.evaluation import Method, evaluate, report
from ttame_jax.evaluation.methods import build_methods, method_options

NUM_IMAGES, BATCH = 4, 2


def tiny_config():
    """synthetic_cnn with random weights; 4 generated 64-px test images."""
    return configs.load(
        "resnet50:smoke", {"backbone.name": "synthetic_cnn", "data.test_size": NUM_IMAGES}
    )


def eval_config(train_dir, **fields):
    """The checkpoint's own config with ``eval.<field>`` overrides: small batches, no bars."""
    overrides = {"eval.batch_size": BATCH, "eval.progress": False}
    overrides.update({f"eval.{k}": v for k, v in fields.items()})
    return with_overrides(rundir.read_config(train_dir), overrides)


@pytest.fixture(scope="module", autouse=True)
def _reuse_backbone_init(cached_load_pretrained):
    """Every run here loads the same random synthetic_cnn (see conftest)."""


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    """A train.py workdir: config.json + an Orbax checkpoint at step 1 (attention at init)."""
    workdir = str(tmp_path_factory.mktemp("run"))
    config = tiny_config()
    rundir.write_config(workdir, config)
    backbone_vars = backbones.load_pretrained("synthetic_cnn", "random", seed=0)
    model = build(get_spec("synthetic_cnn"), config.model)
    attn = model.init(jax.random.key(0), backbone_vars, np.zeros((1, 64, 64, 3), np.float32))
    state = types.SimpleNamespace(
        step=1, params=attn["params"], batch_stats=attn["batch_stats"], opt_state={"n": 0}
    )
    manager = rundir.make_manager(workdir)
    rundir.save_state(manager, state, force=True)
    manager.wait_until_finished()
    manager.close()
    return workdir


@pytest.fixture(scope="module")
def finished(train_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("eval"))
    config = eval_config(train_dir, methods=("ttame", "gradcam"), insertion_deletion=True)
    results = evaluate(train_dir, config, workdir=out)
    return out, results


def _numbers(method_results):
    """A method's metric numbers without timing and extras (those differ between runs)."""
    return {k: v for k, v in method_results.items() if k not in ("seconds_per_image", "extra")}


def test_report_files_structure_and_ranges(finished):
    out, results = finished
    folder = os.path.basename(results["meta"]["report_dir"])
    assert sorted(os.listdir(out)) == ["cache", "index.json", "index.md", folder]
    assert sorted(os.listdir(results["meta"]["report_dir"])) == [
        "report.md", "results.json", "road_curves.png"
    ]  # fmt: skip
    files = results["meta"]["files"]
    assert json.load(open(files["results.json"])) == json.loads(json.dumps(results))
    assert results["meta"]["baseline_layer"] == "layer3"  # last default tap of synthetic_cnn
    assert list(results["methods"]) == ["ttame", "gradcam"]
    for m in results["methods"].values():
        assert m["fp"] == 1 and m["num_images"] == NUM_IMAGES
        assert list(m["ad"]) == list(m["ic"]) == ["100", "50", "15"]
        values = [*m["ad"].values(), *m["ic"].values()]
        for order in ("morf", "lerf"):
            road = m["road"][order]
            assert list(road["accuracy"]) == ["10", "20", "30", "40", "50", "70", "90"]
            values += [*road["accuracy"].values(), *road["probability"].values()]
            assert road["accuracy_avg"] == pytest.approx(np.mean(list(road["accuracy"].values())))
        assert all(np.isfinite(v) and 0.0 <= v <= 100.0 for v in values)
        # IC counts images: with 4 images every IC value is a multiple of 25 %.
        assert all(v % 25.0 == 0.0 for v in m["ic"].values())
        assert m["seconds_per_image"] > 0
        assert 0.0 <= m["deletion_auc"] <= 1.0 and 0.0 <= m["insertion_auc"] <= 1.0
    assert open(files["road_curves.png"], "rb").read(4) == b"\x89PNG"


def test_markdown_table_matches_json(finished):
    _, results = finished
    lines = open(results["meta"]["files"]["report.md"]).read().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Method | AD"))
    for line in lines[start + 2 : start + 4]:
        cells = [c.strip().strip("*").removeprefix("<u>").removesuffix("</u>") for c in
                 line.strip("|").split("|")]  # fmt: skip
        m = results["methods"][cells[0]]
        want = []
        for p in ("100", "50", "15"):
            want += [f"{m['ad'][p]:.2f}%", f"{m['ic'][p]:.2f}%"]
        want += [f"{m['road']['morf']['accuracy_avg']:.2f}%"]
        want += [f"{m['road']['lerf']['accuracy_avg']:.2f}%"]
        want += [f"{m['insertion_auc']:.4f}", f"{m['deletion_auc']:.4f}", str(m["fp"])]
        assert cells[1:] == want


def test_resume_after_interruption(train_dir, finished, tmp_path):
    """Crash in the 4th batch; the rerun computes only that batch and agrees with `finished`."""
    _, uninterrupted = finished
    calls = []

    def pointing(maps, batch):  # pointing game: is the map's maximum on the evidence?
        calls.append(int(batch["index"][0]))
        if len(calls) == 4 and crash:
            raise KeyboardInterrupt  # e.g. Ctrl-C while gradcam's 2nd batch is scored
        flat = maps.reshape(len(maps), -1).argmax(axis=1)
        return batch["evidence"].reshape(len(maps), -1)[np.arange(len(maps)), flat]

    out = str(tmp_path / "eval")
    config = eval_config(train_dir, methods=("ttame", "gradcam"), insertion_deletion=True)
    kwargs = dict(workdir=out, extra_metrics={"pointing": pointing})
    crash = True
    with pytest.raises(KeyboardInterrupt):
        evaluate(train_dir, config, **kwargs)
    assert calls == [0, 2, 0, 2]  # ttame batches 0, 1; gradcam batches 0, 1 (crashed)
    assert not os.path.exists(os.path.join(out, "index.json"))  # no report, no index
    crash = False
    resumed = evaluate(train_dir, config, **kwargs)
    assert calls == [0, 2, 0, 2, 2]  # only gradcam's batch 1 again
    for name in ("ttame", "gradcam"):
        assert _numbers(resumed["methods"][name]) == _numbers(uninterrupted["methods"][name])
        assert 0.0 <= resumed["methods"][name]["extra"]["pointing"] <= 1.0


def test_failing_rerun_leaves_finished_report_intact(train_dir, finished):
    out, results = finished
    files = [*results["meta"]["files"].values(), os.path.join(out, "index.json")]
    before = {f: open(f, "rb").read() for f in files}
    listing = sorted(os.listdir(out))

    def broken(x01, target):
        raise RuntimeError("method crashed")

    methods = ["ttame", Method("broken", broken, fp=1)]  # ttame's batches come from the cache
    config = eval_config(train_dir, insertion_deletion=True)
    with pytest.raises(RuntimeError, match="method crashed"):
        evaluate(train_dir, config, workdir=out, methods=methods)
    assert {f: open(f, "rb").read() for f in files} == before
    assert sorted(os.listdir(out)) == listing  # and no half-written report next to it


def test_clear_errors_before_any_work(train_dir, tmp_path):
    out = str(tmp_path)
    typo = eval_config(train_dir, methods=("ttame", "gradcma"))
    with pytest.raises(ValueError, match="valid methods: ttame, gradcam"):
        evaluate(train_dir, typo, workdir=out)
    with pytest.raises(ValueError, match="valid methods: ttame, gradcam"):
        evaluate(train_dir, workdir=out, methods=["ttame", "gradcma"])
    other = configs.load("resnet50:smoke", {"backbone.name": "synthetic_vit"})
    with pytest.raises(ValueError, match="backbone.name='synthetic_vit'.*'synthetic_cnn'"):
        evaluate(train_dir, other, workdir=out)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate(str(tmp_path / "missing"), workdir=out)
    # ImageNet image folder whose root holds no val/ folder.
    no_data = configs.load(
        "resnet50", {"backbone.name": "synthetic_cnn", "data.root": str(tmp_path / "imagenet")}
    )
    with pytest.raises(FileNotFoundError, match="open the test split.*imagenet/val"):
        evaluate(train_dir, no_data, workdir=out)
    # Per-method options come from config.eval, only for the methods evaluated; explicit
    # options for a method not evaluated are refused.
    ec = eval_config(train_dir, rise_masks=16, chunk_size=8, baseline_layer="layer2").eval
    assert method_options(ec, ["ttame"]) == {}
    with pytest.raises(ValueError, match="options given for method"):
        build_methods(["ttame"], load(train_dir), {"rise": {}})
    assert report.JSON_FILE not in os.listdir(tmp_path)


@pytest.mark.slow
def test_all_paper_methods_in_one_report(train_dir, tmp_path):
    """Issue 5: every baseline next to T-TAME, with its forward-pass count."""
    names = ["ttame", "gradcam", "gradcampp", "scorecam", "ablationcam", "rise"]
    config = eval_config(train_dir, methods=names, rise_masks=16, rise_seed=1, chunk_size=16)
    results = evaluate(train_dir, config, workdir=str(tmp_path))
    module = backbones.create("synthetic_cnn")
    variables = backbones.load_pretrained("synthetic_cnn", "random", seed=0)
    _, taps = backbones.extract(module, variables, np.zeros((1, 64, 64, 3)), ["layer3"])
    channels = taps["layer3"].shape[-1]  # one pass per channel of the last tap
    fp = {name: m["fp"] for name, m in results["methods"].items()}
    assert fp == {"ttame": 1, "gradcam": 1, "gradcampp": 1, "scorecam": channels,
                  "ablationcam": channels, "rise": 16}  # fmt: skip
    table = open(results["meta"]["files"]["report.md"]).read()
    for name in names:
        assert f"| {name} |" in table
    assert results["methods"]["rise"]["options"] == {
        "n_masks": 16, "seed": 1, "batch_size": 16, "layer": "layer3"
    }  # fmt: skip
    assert results["methods"]["scorecam"]["options"] == {"batch_size": 16, "layer": "layer3"}
