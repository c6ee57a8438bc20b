"""The synthetic benchmark end to end on its reduced ``test`` config (one backbone,
T-TAME and Grad-CAM, tiny data): report structure, figures, backbone accuracy, reuse."""

import json
import math
import os

import pytest

from ttame_jax import configs
from ttame_jax.benchmark import pipeline, report
from ttame_jax.benchmark.backbones import get_or_train
from ttame_jax.config import with_overrides
from ttame_jax.data.synthetic import NUM_CLASSES


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    config = configs.load("synthetic:test")
    workdir = str(tmp_path_factory.mktemp("benchmark"))
    result = pipeline.run_benchmark(config, workdir)
    return config, workdir, result


def test_report_json_has_every_method_and_metric(run):
    config, workdir, result = run
    with open(os.path.join(workdir, "report.json")) as f:
        saved = json.load(f)
    assert set(saved["backbones"]) == set(config.benchmark.backbones)
    for name, b in saved["backbones"].items():
        assert list(b["rows"]) == list(config.eval.methods), name
        for method, row in b["rows"].items():
            for key in report.METRICS:
                assert math.isfinite(row[key]), (name, method, key, row[key])
            for key in ("pointing_game", "mass_inside", "counterfactual"):
                assert 0.0 <= row[key] <= 100.0
        assert b["num_counterfactual_images"] == config.benchmark.num_counterfactual
    assert saved["backbones"] == json.loads(json.dumps(result["backbones"]))


def test_ttame_is_reported_over_its_seeds(run):
    """Issue 12: T-TAME trained per seed; its row is the mean, with the range and each
    seed's numbers; figures come from the median seed; the verdict respects the range."""
    config, workdir, result = run
    seeds = list(config.benchmark.ttame_seeds)
    assert len(seeds) >= 2 and result["seeds"] == seeds
    for name, b in result["backbones"].items():
        assert sorted(b["ttame_per_seed"]) == sorted(str(s) for s in seeds)
        assert b["median_seed"] in seeds
        for key in report.METRICS:
            if key == "fp":
                continue
            values = [r[key] for r in b["ttame_per_seed"].values()]
            lo, hi = b["spread"]["ttame"][key]
            assert (lo, hi) == (min(values), max(values)), key
            assert math.isclose(b["rows"]["ttame"][key], sum(values) / len(values)), key
        for s in seeds:  # one T-TAME run per seed
            assert os.path.isfile(os.path.join(workdir, name, "ttame", f"seed_{s}", "config.json"))
    text = open(os.path.join(workdir, "report.md")).read()
    assert f"over {len(seeds)} training seeds" in text


def test_compiled_programs_are_kept_in_the_workdir(run):
    """The persistent compilation cache lives in workdir/xla_cache during the run (later
    seeds and reruns load from it) and is switched off again afterwards."""
    import jax

    _, workdir, _ = run
    assert os.listdir(os.path.join(workdir, "xla_cache"))  # the backbone's steps at least
    assert jax.config.jax_compilation_cache_dir is None


def test_report_states_the_machine_and_cpu_seconds(run):
    _, workdir, result = run
    assert result["machine"]["cpu"] and result["machine"]["cores"] >= 1
    for b in result["backbones"].values():
        assert set(b["cpu_seconds"]) == set(b["seconds"])
        assert all(v > 0 for v in b["cpu_seconds"].values())
    text = open(os.path.join(workdir, "report.md")).read()
    assert result["machine"]["cpu"] in text and "Seconds per stage (wall / CPU)" in text


def test_verdict_needs_differences_beyond_the_seed_range():
    keys = ("pointing_game", "mass_inside", "counterfactual")
    gradcam = dict(zip(keys, (50.0, 15.0, 80.0), strict=True))
    rows = {"ttame": dict(zip(keys, (60.0, 20.0, 90.0), strict=True)), "gradcam": gradcam}
    spread = {"ttame": {"pointing_game": [45.0, 70.0], "mass_inside": [16.0, 24.0],
                        "counterfactual": [85.0, 95.0]}}  # fmt: skip
    text = report.verdict(rows, spread)
    assert text.startswith("T-TAME localises at least as well as Grad-CAM here")
    assert "pointing game 60.0 (45.0–70.0) vs 50.0 (within the seed range)" in text


def test_report_markdown_states_accuracy_table_and_verdict(run):
    config, workdir, result = run
    with open(os.path.join(workdir, "report.md")) as f:
        text = f.read()
    for name, b in result["backbones"].items():
        assert f"## {name}" in text
        assert f"Backbone test accuracy: **{100 * b['test_accuracy']:.1f} %**" in text
        for method in config.eval.methods:
            assert f"\n| {method} | " in text
        assert report.verdict(b["rows"], b["spread"]) in text
    for header, _, _ in report.COLUMNS:
        assert header in text


def test_figures_are_written(run):
    config, workdir, _ = run
    folder = os.path.join(workdir, "figures")
    for name in config.benchmark.backbones:
        expected = [f"{name}_road_curves.png"]
        for i in range(config.benchmark.num_figures):
            expected += [f"{name}_overlay_{i}.png", f"{name}_counterfactual_{i}.png"]
        for file in expected:
            with open(os.path.join(folder, file), "rb") as f:
                assert f.read(8) == b"\x89PNG\r\n\x1a\n", file


def test_trained_backbones_beat_chance_widely(run):
    _, _, result = run
    for name, b in result["backbones"].items():
        assert b["test_accuracy"] > 3.0 / NUM_CLASSES, (name, b["test_accuracy"])


def test_trained_backbone_is_reused_and_other_settings_are_refused(run, capsys):
    config, workdir, result = run
    name = config.benchmark.backbones[0]
    folder = os.path.join(workdir, name)
    again = get_or_train(config, name, folder)
    assert "reusing the trained backbone" in capsys.readouterr().out
    assert again["accuracy"] == result["backbones"][name]["test_accuracy"]
    other = with_overrides(config, {"classifier.cnn_lr": 2 * config.classifier.cnn_lr})
    with pytest.raises(ValueError, match="trained with other settings"):
        get_or_train(other, name, folder)


def test_config_rejects_unknown_variant_and_non_benchmark_configs(tmp_path):
    with pytest.raises(ValueError, match="unknown variant"):
        configs.load("synthetic:huge")
    with pytest.raises(ValueError, match="not a benchmark config"):
        pipeline.run_benchmark(configs.load("resnet50:smoke"), str(tmp_path))


@pytest.mark.parametrize(
    "ttame, expected",
    [
        ((60.0, 20.0, 90.0), "better than"),
        ((60.0, 20.0, 80.0), "at least as well as"),
        ((40.0, 20.0, 70.0), "mixed against"),
        ((40.0, 10.0, 70.0), "not better than"),
        ((50.0, 15.0, 80.0), "not better than"),
    ],
)
def test_verdict_counts_wins_and_losses(ttame, expected):
    keys = ("pointing_game", "mass_inside", "counterfactual")
    gradcam = dict(zip(keys, (50.0, 15.0, 80.0), strict=True))
    rows = {"ttame": dict(zip(keys, ttame, strict=True)), "gradcam": gradcam}
    assert report.verdict(rows).startswith(f"T-TAME localises {expected} Grad-CAM here")


def test_vit_backbone_starts_from_the_cnn_trained_first(tmp_path, capsys):
    config = configs.load(
        "synthetic:test",
        {
            "data.train_size": 64,
            "data.test_size": 16,
            "classifier.cnn_steps": 2,
            "classifier.vit_steps": 2,
            "classifier.batch_size": 16,
            "benchmark.progress": False,
        },
    )
    folder = str(tmp_path / "synthetic_vit")
    vit = get_or_train(config, "synthetic_vit", folder)
    cnn_weights = str(tmp_path / "synthetic_cnn" / "synthetic_cnn.msgpack")
    assert os.path.exists(cnn_weights)  # not in the list, so trained first
    with open(os.path.join(folder, "settings.json")) as f:
        saved = json.load(f)
    assert saved["init_from"]["weights"] == cnn_weights
    assert saved["init_from"]["steps"] == 2
    # Rerun: both are reused; a changed CNN recipe invalidates the ViT built on it.
    capsys.readouterr()
    assert get_or_train(config, "synthetic_vit", folder)["settings"] == vit["settings"]
    out = capsys.readouterr().out
    assert "synthetic_cnn: reusing" in out and "synthetic_vit: reusing" in out
    config = with_overrides(config, {"classifier.cnn_steps": 3})
    os.remove(cnn_weights)
    with pytest.raises(ValueError, match="synthetic_vit trained with other settings"):
        get_or_train(config, "synthetic_vit", folder)


def test_ttame_config_stores_an_absolute_backbone_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = configs.load("synthetic:test")
    tcfg = pipeline.ttame_config(config, "synthetic_cnn", "b/w.msgpack")
    assert tcfg.backbone.weights == str(tmp_path / "b" / "w.msgpack")
    assert tcfg.backbone.name == "synthetic_cnn"
