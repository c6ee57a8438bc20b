"""evaluate() end to end on a tiny checkpoint: report files, numbers, resume, failed reruns."""

import json
import os
import types

import jax
import numpy as np
import pytest

from configs import common
from ttame_jax import backbones
from ttame_jax.backbones import get_spec
from ttame_jax.core.model import build
from ttame_jax.evaluation import Method, evaluate, report
from ttame_jax.training import checkpoint

NUM_IMAGES, BATCH = 4, 2


def tiny_config():
    """synthetic_cnn with random weights; 4 generated 64-px test images."""
    c = common.smoke(common.get_base_config("synthetic_cnn"))
    c.data.test_size = NUM_IMAGES
    c.lock()
    return c


@pytest.fixture(scope="module", autouse=True)
def _reuse_backbone_init(cached_load_pretrained):
    """Every run here loads the same random synthetic_cnn (see conftest)."""


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    """A train.py workdir: config.json + an Orbax checkpoint at step 1 (attention at init)."""
    workdir = str(tmp_path_factory.mktemp("run"))
    config = tiny_config()
    checkpoint.write_config(workdir, config)
    backbone_vars = backbones.load_pretrained("synthetic_cnn", "random", seed=0)
    model = build(get_spec("synthetic_cnn"), config.model)
    attn = model.init(jax.random.key(0), backbone_vars, np.zeros((1, 64, 64, 3), np.float32))
    state = types.SimpleNamespace(
        step=1, params=attn["params"], batch_stats=attn["batch_stats"], opt_state={"n": 0}
    )
    manager = checkpoint.make_manager(workdir)
    checkpoint.save_state(manager, state, force=True)
    manager.wait_until_finished()
    manager.close()
    return workdir


@pytest.fixture(scope="module")
def finished(train_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("eval"))
    methods = ["ttame", "gradcam"]
    results = evaluate(
        None, train_dir, out, methods, batch_size=BATCH, progress=False, insertion_deletion=True
    )
    return out, results


def _numbers(method_results):
    """A method's metric numbers without timing and extras (those differ between runs)."""
    return {k: v for k, v in method_results.items() if k not in ("seconds_per_image", "extra")}


def test_report_files_structure_and_ranges(finished):
    out, results = finished
    assert sorted(os.listdir(out)) == ["cache", "report.md", "results.json", "road_curves.png"]
    assert json.load(open(os.path.join(out, "results.json"))) == json.loads(json.dumps(results))
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
    assert open(os.path.join(out, "road_curves.png"), "rb").read(4) == b"\x89PNG"


def test_markdown_table_matches_json(finished):
    out, results = finished
    lines = open(os.path.join(out, "report.md")).read().splitlines()
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
    kwargs = dict(batch_size=BATCH, progress=False, extra_metrics={"pointing": pointing})
    kwargs.update(insertion_deletion=True)
    crash = True
    with pytest.raises(KeyboardInterrupt):
        evaluate(None, train_dir, out, ["ttame", "gradcam"], **kwargs)
    assert calls == [0, 2, 0, 2]  # ttame batches 0, 1; gradcam batches 0, 1 (crashed)
    assert not os.path.exists(os.path.join(out, "report.md"))
    crash = False
    resumed = evaluate(None, train_dir, out, ["ttame", "gradcam"], **kwargs)
    assert calls == [0, 2, 0, 2, 2]  # only gradcam's batch 1 again
    for name in ("ttame", "gradcam"):
        assert _numbers(resumed["methods"][name]) == _numbers(uninterrupted["methods"][name])
        assert 0.0 <= resumed["methods"][name]["extra"]["pointing"] <= 1.0


def test_failing_rerun_leaves_finished_report_intact(train_dir, finished):
    out, _ = finished
    files = ("report.md", "results.json", "road_curves.png")
    before = {f: open(os.path.join(out, f), "rb").read() for f in files}

    def broken(x01, target):
        raise RuntimeError("method crashed")

    methods = ["ttame", Method("broken", broken, fp=1)]  # ttame's batches come from the cache
    with pytest.raises(RuntimeError, match="method crashed"):
        evaluate(None, train_dir, out, methods, batch_size=BATCH, progress=False,
                 insertion_deletion=True)  # fmt: skip
    assert {f: open(os.path.join(out, f), "rb").read() for f in files} == before


def test_clear_errors_before_any_work(train_dir, tmp_path):
    with pytest.raises(ValueError, match="valid methods: ttame, gradcam"):
        evaluate(None, train_dir, str(tmp_path), ["ttame", "gradcma"])
    other = common.smoke(common.get_base_config("synthetic_vit"))
    with pytest.raises(ValueError, match="backbone.name='synthetic_vit'.*'synthetic_cnn'"):
        evaluate(other, train_dir, str(tmp_path), ["ttame"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate(None, str(tmp_path / "missing"), str(tmp_path), ["ttame"])
    no_data = common.get_base_config("synthetic_cnn")  # ImageNet image folder, root unset
    no_data.data.root = str(tmp_path / "imagenet")
    with pytest.raises(FileNotFoundError, match="open the test split.*imagenet/val"):
        evaluate(no_data, train_dir, str(tmp_path), ["ttame"])
    with pytest.raises(ValueError, match="options given for method"):
        evaluate(None, train_dir, str(tmp_path), ["ttame"], method_options={"rise": {}})
    assert report.JSON_FILE not in os.listdir(tmp_path)


@pytest.mark.slow
def test_all_paper_methods_in_one_report(train_dir, tmp_path):
    """Issue 5: every baseline next to T-TAME, with its forward-pass count."""
    names = ["ttame", "gradcam", "gradcampp", "scorecam", "ablationcam", "rise"]
    options = {"rise": {"n_masks": 16, "seed": 1}, "scorecam": {"batch_size": 16}}
    results = evaluate(
        None, train_dir, str(tmp_path), names, batch_size=BATCH, progress=False,
        method_options=options,
    )  # fmt: skip
    module = backbones.create("synthetic_cnn")
    variables = backbones.load_pretrained("synthetic_cnn", "random", seed=0)
    _, taps = backbones.extract(module, variables, np.zeros((1, 64, 64, 3)), ["layer3"])
    channels = taps["layer3"].shape[-1]  # one pass per channel of the last tap
    fp = {name: m["fp"] for name, m in results["methods"].items()}
    assert fp == {"ttame": 1, "gradcam": 1, "gradcampp": 1, "scorecam": channels,
                  "ablationcam": channels, "rise": 16}  # fmt: skip
    table = open(tmp_path / "report.md").read()
    for name in names:
        assert f"| {name} |" in table
    assert results["methods"]["rise"]["options"] == {"n_masks": 16, "seed": 1, "layer": "layer3"}
