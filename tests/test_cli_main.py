"""``ttame explain`` / ``ttame sanity`` on a tiny trained checkpoint and real image files."""

import csv
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

from ttame_jax.backbones import get_spec
from ttame_jax.cli.main import main
from ttame_jax.data import preprocess

SPEC = get_spec("synthetic_cnn")
S = SPEC.input_size  # 64
GOOD = ["gray.png", "rgb.jpg", "rgba.png", os.path.join("sub", "rgb.png")]


@pytest.fixture(scope="module")
def checkpoint(tiny_run):
    """T-TAME trained 2 steps on synthetic data (random synthetic_cnn backbone; conftest)."""
    return tiny_run


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Images of several kinds and sizes, a corrupt JPEG and a non-image file."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (50, 90), np.uint8), "L").save(root / "gray.png")
    Image.fromarray(rng.integers(0, 256, (120, 80, 3), np.uint8)).save(root / "rgb.jpg")
    Image.fromarray(rng.integers(0, 256, (64, 64, 4), np.uint8), "RGBA").save(root / "rgba.png")
    (root / "sub").mkdir()
    Image.fromarray(rng.integers(0, 256, (300, 200, 3), np.uint8)).save(root / "sub" / "rgb.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def explained(checkpoint, images, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("explained"))
    argv = ["explain", str(images), "--checkpoint", checkpoint, "--out", out,
            "--batch-size", "3", "--figures", "--no-progress"]  # fmt: skip
    return out, main(argv)


def _decode_overlay(png, maps0):
    """The image under a 50 % jet overlay: (overlay - 0.5 jet(map)) / 0.5."""
    jet = colormaps["jet"](maps0)[..., :3]
    return (np.asarray(png, np.float64) / 255 - 0.5 * jet) / 0.5


def test_explain_writes_every_output(explained, images, capfd):
    out, rc = explained
    assert rc == 0
    names = {"gray.png", "rgb.jpg", "rgba.png", os.path.join("sub", "rgb.png")}
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    assert {r["files"]["maps"][: -len(".maps.npy")] for r in manifest["images"]} == names
    for record in manifest["images"]:
        files = {k: os.path.join(out, f) for k, f in record["files"].items()}
        maps = np.load(files["maps"])
        assert maps.dtype == np.float32 and maps.shape == (3, S, S)
        assert maps.min() >= 0 and maps.max() <= 1 and np.all(np.ptp(maps, axis=(1, 2)) > 0.5)
        per_image = json.load(open(files["json"]))
        assert per_image == record
        top = per_image["top_k"]
        assert per_image["explained"] == top and len(top) == 3
        probs = [t["probability"] for t in top]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert all(t["name"] == SPEC.class_names[t["index"]] for t in top)
        with Image.open(files["overlay"]) as png:
            assert png.size == (S, S) and png.mode == "RGB"
            # The overlay is the evaluation-preprocessed image under the first map.
            want = preprocess.eval_transform(preprocess.load_image(record["image"]), S)
            np.testing.assert_allclose(_decode_overlay(png, maps[0]), want, atol=2.5 / 255)
        with Image.open(files["figure"]) as fig:
            assert fig.size[0] > 3 * fig.size[1]  # input + 3 maps side by side
    gray = next(r for r in manifest["images"] if r["image"].endswith("gray.png"))
    decoded = _decode_overlay(Image.open(os.path.join(out, "gray.png.overlay.png")), np.load(
        os.path.join(out, "gray.png.maps.npy"))[0])  # fmt: skip
    np.testing.assert_allclose(decoded[..., 0], decoded[..., 2], atol=2.5 / 255)  # grey stays grey
    assert gray["image"] == str(images / "gray.png")


def test_explain_reports_and_skips_the_corrupt_file(explained, images):
    out, _ = explained
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    assert [s["path"] for s in manifest["skipped"]] == [str(images / "broken.jpg")]
    assert not any(f.startswith("broken") for f in os.listdir(out))
    assert not any(f.startswith("notes") for f in os.listdir(out))
    for key in ("versions", "config", "seed", "checkpoint", "backbone", "argv"):
        assert key in manifest
    assert manifest["checkpoint"]["step"] == 2 and manifest["versions"]["jax"]
    assert manifest["complete"] is True
    assert manifest["config"]["backbone"]["name"] == "synthetic_cnn"


def test_explain_refuses_to_overwrite_and_chosen_classes(explained, checkpoint, images, capsys):
    out, _ = explained
    argv = ["explain", str(images / "rgb.jpg"), "--checkpoint", checkpoint, "--out", out,
            "--classes", "checker,0", "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    record = json.load(open(os.path.join(out, "rgb.jpg.explain.json")))
    assert [c["index"] for c in record["explained"]] == [SPEC.class_names.index("checker"), 0]
    assert np.load(os.path.join(out, "rgb.jpg.maps.npy")).shape == (2, S, S)
    assert main([*argv[:-3], "--classes", "zebra", "--overwrite"]) == 2
    assert "neither an index" in capsys.readouterr().err


def test_explain_input_errors(checkpoint, images, tmp_path, capsys):
    assert main(["explain", str(tmp_path / "nope.jpg"), "--checkpoint", checkpoint,
                 "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    assert "no such image" in capsys.readouterr().err
    only_bad = ["explain", str(images / "broken.jpg"), "--checkpoint", checkpoint,
                "--out", str(tmp_path / "o2"), "--no-progress"]  # fmt: skip
    assert main(only_bad) == 1
    assert "skipping" in capsys.readouterr().err


def test_sanity_subcommand(checkpoint, images, tmp_path):
    out = str(tmp_path / "sanity")
    argv = ["sanity", str(images / "rgb.jpg"), str(images / "gray.png"),
            "--checkpoint", checkpoint, "--out", out, "--parts", "attention"]  # fmt: skip
    assert main(argv) == 0
    summary = json.load(open(os.path.join(out, "sanity.json")))
    steps = summary["steps"]
    assert steps[0] == "attention/fuser" and all(s.startswith("attention/") for s in steps)
    rho, sim = np.array(summary["spearman"]), np.array(summary["ssim"])
    assert rho.shape == sim.shape == (2, len(steps))
    assert np.all(np.abs(rho) <= 1) and np.all(np.abs(sim) <= 1)
    rows = list(csv.DictReader(open(os.path.join(out, "sanity.csv"))))
    assert [r["unit"] for r in rows] == steps
    np.testing.assert_allclose([float(r["mean_ssim"]) for r in rows], sim.mean(0), atol=1e-6)
    with Image.open(os.path.join(out, "sanity.png")) as fig:
        assert fig.size[0] > fig.size[1]
    assert json.load(open(os.path.join(out, "manifest.json")))["parts"] == ["attention"]


def _run(*args, timeout=120):
    cmd = [sys.executable, "-m", "ttame_jax.cli.main", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_entry_point_in_a_subprocess():
    done = _run("explain", "--help")
    assert done.returncode == 0 and "--top-k" in done.stdout, done.stderr
    for command, flag in (("train", "--workdir"), ("evaluate", "--checkpoint")):
        done = _run(command, "--help")
        assert done.returncode == 0 and flag in done.stdout and "--config." in done.stdout
    assert _run("frobnicate").returncode == 2


@pytest.mark.slow
def test_full_cli_in_subprocesses(checkpoint, images, tmp_path):
    out = str(tmp_path / "explained")
    done = _run("explain", str(images / "rgba.png"), "--checkpoint", checkpoint, "--out", out,
                "--top-k", "2", timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert np.load(os.path.join(out, "rgba.png.maps.npy")).shape == (2, S, S)
    run = str(tmp_path / "run")
    done = _run("train", "--config=configs/vgg16.py:smoke", "--config.backbone.name=synthetic_cnn",
                f"--workdir={run}", timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    flags = ["--config.eval.num_images=2", "--config.eval.batch_size=2", "--config.eval.progress=0"]
    done = _run("evaluate", f"--checkpoint={run}", *flags, timeout=600)
    assert done.returncode == 0, done.stderr
    report_dir = done.stdout.split("report written to ")[1].splitlines()[0]
    assert os.path.samefile(os.path.dirname(report_dir), os.path.join(run, "eval"))
    assert os.path.isfile(os.path.join(report_dir, "report.md"))
    assert os.path.isfile(os.path.join(run, "eval", "index.md"))


def test_console_script_is_installed():
    scripts = importlib.metadata.entry_points(group="console_scripts", name="ttame")
    assert scripts, "the ttame console script is not installed (pyproject [project.scripts])"
    assert next(iter(scripts)).value == "ttame_jax.cli.main:main"
    exe = shutil.which("ttame") or os.path.join(os.path.dirname(sys.executable), "ttame")
    done = subprocess.run([exe, "explain", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--checkpoint" in done.stdout, done.stderr


def test_python_snippet_of_the_docs(checkpoint, images, tmp_path):
    text = open(os.path.join(os.path.dirname(__file__), "..", "docs", "cli.md")).read()
    snippet = text.split("```python\n")[1].split("```")[0]
    for old, new in {
        "runs/demo": checkpoint,
        "cat.jpg": str(images / "rgb.jpg"),
        "dog.png": str(images / "gray.png"),
        "cat_overlay.png": str(tmp_path / "overlay.png"),
    }.items():
        snippet = snippet.replace(f'"{old}"', repr(new))
    scope = {}
    exec(compile(snippet, "docs/cli.md", "exec"), scope)
    assert scope["out"].maps.shape == (2, S, S)
    with Image.open(tmp_path / "overlay.png") as png:
        assert png.size == (S, S)
