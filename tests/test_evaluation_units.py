"""Evaluation pipeline parts without a backbone: cache, report, input checks, CLI options."""

import json
import os
import re

import numpy as np
import pytest

from ttame_jax import fileio, rundir
from ttame_jax.config import Config, DataConfig
from ttame_jax.data.source import DataSource
from ttame_jax.evaluation import cache, methods, report, scoring


def test_cache_roundtrip_key_folders_and_unreadable_batch(tmp_path):
    key = {"method": "ttame", "step": 3, "options": {"n_masks": 10}}
    c = cache.BatchCache(str(tmp_path), "ttame", key)
    assert c.load(0) is None
    c.save(0, {"ad": np.arange(6.0).reshape(2, 3), "seconds": np.float64(0.5)})
    back = c.load(0)
    np.testing.assert_array_equal(back["ad"], np.arange(6.0).reshape(2, 3))
    assert float(back["seconds"]) == 0.5
    assert json.load(open(os.path.join(c.folder, "key.json"))) == key
    # Same key -> same folder; any changed setting -> a different folder.
    assert cache.BatchCache(str(tmp_path), "ttame", dict(key)).folder == c.folder
    assert cache.BatchCache(str(tmp_path), "ttame", {**key, "step": 4}).folder != c.folder
    # A batch file cut short (e.g. full disk) counts as missing, so it is recomputed.
    with open(c.path(1), "wb") as f:
        f.write(open(c.path(0), "rb").read()[:20])
    assert c.load(1) is None and not c.has(1)
    assert not [n for n in os.listdir(c.folder) if n.startswith(".tmp-")]


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    path = str(tmp_path / "report.md")
    fileio.atomic_write_bytes(path, b"finished report")

    with pytest.raises(TypeError):  # fails mid-write, after the temporary file exists
        fileio.atomic_write_bytes(path, object())
    assert open(path, "rb").read() == b"finished report"
    assert os.listdir(tmp_path) == ["report.md"]


def _method_numbers(ad, ic, morf, lerf, fp):
    levels = [scoring.percent_label(f) for f in scoring.ROAD_REMOVED]
    road = {}
    for order, acc in (("morf", morf), ("lerf", lerf)):
        road[order] = {
            "accuracy": dict(zip(levels, [acc] * 7, strict=True)),
            "accuracy_avg": acc,
            "probability": dict(zip(levels, [acc / 2] * 7, strict=True)),
            "probability_avg": acc / 2,
        }
    return {
        "fp": fp,
        "options": {},
        "num_images": 4,
        "seconds_per_image": 0.01,
        "ad": dict(zip(("100", "50", "15"), ad, strict=True)),
        "ic": dict(zip(("100", "50", "15"), ic, strict=True)),
        "road": road,
        "extra": {"pointing": 0.75},
    }


def test_markdown_table_marks_best_and_second_and_matches_numbers():
    results = {
        "meta": {"backbone": "resnet50", "num_images": 4, "split": "test"},
        "methods": {
            "gradcam": _method_numbers((30, 60, 80), (20, 10, 2), 25.0, 80.0, 1),
            "scorecam": _method_numbers((20, 50, 70), (25, 15, 3), 28.0, 78.0, 2048),
            "ttame": _method_numbers((10, 40, 75), (50, 20, 5), 20.0, 75.0, 1),
        },
    }
    text = report.render_markdown(results)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| Method | AD"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "Method", "AD↓(100%)", "IC↑(100%)", "AD↓(50%)", "IC↑(50%)", "AD↓(15%)", "IC↑(15%)",
        "MoRF↓", "LeRF↑", "FP↓",
    ]  # fmt: skip
    rows = {}
    for line in lines[lines.index(header) + 2 : lines.index(header) + 5]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    # AD(100%): lower is better -> ttame best (bold), scorecam second (underlined).
    assert rows["ttame"][0] == "**10.00%**" and rows["scorecam"][0] == "<u>20.00%</u>"
    assert rows["gradcam"][0] == "30.00%"
    # LeRF: higher is better -> gradcam best; FP tie at 1 -> both bold.
    assert rows["gradcam"][7] == "**80.00%**" and rows["scorecam"][7] == "<u>78.00%</u>"
    assert rows["ttame"][8] == "**1**" and rows["gradcam"][8] == "**1**"
    assert rows["scorecam"][8] == "<u>2048</u>"
    # Every cell is the JSON number, formatted.
    plain = {k: [float(re.sub(r"[^0-9.]", "", c)) for c in v] for k, v in rows.items()}
    assert plain["scorecam"][:6] == [20, 25, 50, 15, 70, 3]
    assert "pointing=0.7500" in text


def test_road_plot_is_a_png():
    results = {"meta": {}, "methods": {"a": _method_numbers((1, 2, 3), (1, 2, 3), 5, 6, 1)}}
    assert report.plot_road(results)[:8] == b"\x89PNG\r\n\x1a\n"


def test_summarise_means_per_image_terms_over_batches():
    def row(drop, n):
        return {
            "drop": np.full((n, 3), drop), "increase": np.zeros((n, 3)),
            "morf_correct": np.full((n, 7), float(drop > 0.05)), "morf_prob": np.zeros((n, 7)),
            "lerf_correct": np.zeros((n, 7)), "lerf_prob": np.full((n, 7), 0.5),
            "extra.hit": np.array([1.0, np.nan, 0.0][:n]), "target": np.zeros(n, np.int32),
            "seconds": np.float64(0.3),
        }  # fmt: skip

    out = scoring.summarise([row(0.1, 3), row(0.0, 1)])  # 3 images + 1 image
    assert out["num_images"] == 4
    assert out["ad"] == pytest.approx({"100": 7.5, "50": 7.5, "15": 7.5})  # 100 (3*0.1 + 0) / 4
    assert out["ic"] == {"100": 0.0, "50": 0.0, "15": 0.0}
    assert out["road"]["morf"]["accuracy_avg"] == 75.0
    assert out["road"]["morf"]["accuracy"]["90"] == 75.0
    assert out["road"]["lerf"]["probability"]["10"] == 50.0
    assert out["extra"]["hit"] == pytest.approx(2 / 3)  # NaN = not applicable, skipped
    assert out["seconds_per_image"] == pytest.approx(0.6 / 4)
    assert "insertion_auc" not in out


def test_unknown_method_lists_valid_names():
    with pytest.raises(ValueError, match="'gradkam'.*valid methods: ttame, gradcam, "):
        methods.check_names(["ttame", "gradkam"])
    with pytest.raises(ValueError, match="listed twice"):
        methods.check_names(["ttame", "ttame"])
    with pytest.raises(ValueError, match="road_compat"):
        scoring.check_compat("roads")


def test_missing_or_empty_checkpoint_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        rundir.find(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        rundir.find(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "checkpoints").mkdir()
    workdir = rundir.find(str(tmp_path / "checkpoints"))  # a path inside the workdir
    assert workdir == str(tmp_path)
    assert rundir.steps(workdir) == []
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        rundir.pick_step(workdir)


def _run_cli(argv, capsys):
    """``ttame evaluate ARGV``: (exit status, stderr)."""
    from ttame_jax.cli.main import main

    status = main(["evaluate", *argv])
    return status, capsys.readouterr().err


class _Evaluated(Exception):
    """Raised by the stand-in evaluate() with the config the command line built."""


def test_cli_method_options_from_overrides(tmp_path, monkeypatch, capsys):
    import ttame_jax.evaluation

    rundir.write_config(str(tmp_path), Config())

    def fake_evaluate(checkpoint_dir, config=None, **kwargs):
        raise _Evaluated(checkpoint_dir, config)

    monkeypatch.setattr(ttame_jax.evaluation, "evaluate", fake_evaluate)
    argv = [f"--checkpoint={tmp_path}", "--config.eval.methods=ttame,rise,scorecam"]
    argv += ["--config.eval.rise_masks=50", "--config.eval.chunk_size", "8"]
    with pytest.raises(_Evaluated) as got:
        _run_cli(argv, capsys)
    checkpoint_dir, config = got.value.args
    assert checkpoint_dir == str(tmp_path)
    assert config.eval.methods == ("ttame", "rise", "scorecam")
    assert methods.method_options(config.eval, config.eval.methods) == {
        "rise": {"seed": 0, "n_masks": 50, "batch_size": 8},
        "scorecam": {"batch_size": 8},
    }
    # A misspelt field is an error (status 2) naming the close match, before any work.
    status, err = _run_cli([f"--checkpoint={tmp_path}", "--config.eval.rise_mask=50"], capsys)
    assert status == 2
    assert "ttame evaluate: error:" in err and 'Did you mean "rise_masks"' in err


def test_cli_rejects_unknown_method_before_loading_anything(tmp_path, capsys):
    # A workdir with its config.json but no checkpoint and no data: the method name is
    # checked first.
    rundir.write_config(str(tmp_path), Config())
    argv = [f"--checkpoint={tmp_path}", "--config.eval.methods=ttame,gradkam"]
    status, err = _run_cli(argv, capsys)
    assert status == 2
    assert re.search(r"ttame evaluate: error: .*'gradkam'.*valid methods", err)
    status, err = _run_cli([f"--checkpoint={tmp_path}/none"], capsys)
    assert status == 2 and "does not exist" in err


class _ArraySource:
    """n images whose pixel value is their index; records the images it decodes."""

    num_classes, class_names, skipped = 10, None, 0

    def __init__(self, n):
        self.n, self.decoded = n, []

    def __len__(self):
        return self.n

    def describe(self, index):
        return f"image {index}"

    def batches(
        self, batch_size, *, epoch=0, shuffle=False, augment=False, drop_remainder=False, start=0
    ):
        assert not shuffle and not augment
        for s in range(start * batch_size, self.n, batch_size):
            idx = np.arange(s, min(s + batch_size, self.n))
            self.decoded.extend(idx.tolist())
            yield {"image": idx[:, None].astype(np.float32), "index": idx}


@pytest.mark.parametrize("kind", ["array", "synthetic"])
def test_batches_resume_at_first_missing_batch_and_cut_to_num_images(kind):
    from ttame_jax.data import build_source
    from ttame_jax.evaluation.evaluator import _batches

    if kind == "array":
        source = _ArraySource(10)
    else:  # the synthetic source (formerly without start=) resumes too
        data = DataConfig(name="synthetic", train_size=8, val_size=2, test_size=10)
        source = build_source(data, "test", input_size=32, seed=0)
    assert isinstance(source, DataSource)
    got = [(i, b) for i, b in _batches(source, 3, first=1, num_images=8)]
    # batch 2 cut at image 8; batch 3 never read
    assert [(i, b["index"].tolist()) for i, b in got] == [(1, [3, 4, 5]), (2, [6, 7])]
    if kind == "array":  # images of batch 0 are not decoded at all
        assert source.decoded == [3, 4, 5, 6, 7, 8]
    full = list(source.batches(3, shuffle=False, augment=False))  # the same images
    np.testing.assert_array_equal(got[0][1]["image"], full[1]["image"])
    np.testing.assert_array_equal(got[1][1]["image"], full[2]["image"][:2])


def test_cam_baselines_explain_the_reference_layers():
    """Issue 12 D1: VGG-16's CAM baselines explain features.29 (ReLU after conv5_3, 14x14)
    as the reference did, not the 7x7 max-pool features.30 (the last T-TAME tap); other
    backbones explain their last T-TAME tap."""
    import types

    from ttame_jax.backbones import get_spec
    from ttame_jax.config import ModelConfig

    def layer(name, **model):
        explainer = types.SimpleNamespace(spec=get_spec(name), model_cfg=ModelConfig(**model))
        return methods.baseline_layer(explainer)

    assert layer("vgg16") == "features.29"
    assert layer("resnet50") == "layer4" and layer("resnet50", taps=("layer3",)) == "layer3"
    assert layer("vit_b_16") == "encoder.layers.encoder_layer_11.ln"


def test_report_without_matplotlib_skips_only_the_plot(tmp_path, monkeypatch, caplog):
    """A machine without matplotlib (e.g. a minimal accelerator image) gets results.json and
    report.md, and a warning, instead of an error after the whole evaluation."""
    results = {"meta": {}, "methods": {"a": _method_numbers((1, 2, 3), (1, 2, 3), 5, 6, 1)}}
    monkeypatch.setattr(report, "can_plot", lambda: False)
    monkeypatch.setattr(report, "plot_road", lambda results: pytest.fail("plotted"))
    paths = report.write_report(str(tmp_path), results)
    assert sorted(paths) == sorted([report.JSON_FILE, report.MARKDOWN_FILE])
    assert sorted(os.listdir(tmp_path)) == [report.MARKDOWN_FILE, report.JSON_FILE]
    assert "matplotlib is not installed" in caplog.text
