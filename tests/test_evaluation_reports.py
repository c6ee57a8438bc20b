"""Issue 14.4: every evaluation keeps its own report; an index lists them all."""

import json
import os

import test_evaluation_pipeline as pipeline_tests

from ttame_jax.evaluation import evaluate, report

# The tiny checkpoint of the pipeline tests (config.json + attention at init).
train_dir = pipeline_tests.train_dir
_reuse_backbone_init = pipeline_tests._reuse_backbone_init
eval_config = pipeline_tests.eval_config


def _report_files(workdir: str) -> dict[str, bytes]:
    """Bytes of every file under ``workdir`` except the shared cache and the index."""
    files = {}
    for folder, dirs, names in os.walk(workdir):
        dirs[:] = [d for d in dirs if d != "cache"]
        for name in names:
            path = os.path.join(folder, name)
            if name not in ("index.json", "index.md"):
                files[os.path.relpath(path, workdir)] = open(path, "rb").read()
    return files


def _counting(calls: list):
    def count(maps, batch):  # an extra metric that records which batches were computed
        calls.append(int(batch["index"][0]))
        return maps.reshape(len(maps), -1).mean(axis=1)

    return {"count": count}


def test_rerun_with_other_settings_keeps_the_first_report(train_dir, tmp_path):
    out = str(tmp_path / "eval")
    first = eval_config(train_dir, methods=("ttame", "gradcam"))
    evaluate(train_dir, first, workdir=out)
    before = _report_files(out)
    assert {os.path.basename(p) for p in before} == {"report.md", "results.json",
                                                     "road_curves.png"}  # fmt: skip
    fewer = eval_config(train_dir, methods=("ttame",), num_images=2)
    evaluate(train_dir, fewer, workdir=out)
    after = _report_files(out)
    assert {p: after.get(p) for p in before} == before  # the first report, byte for byte
    assert len(after) == 2 * len(before)  # and the second one next to it


def test_index_lists_every_report_and_reruns_are_idempotent(train_dir, tmp_path):
    out, calls = str(tmp_path / "eval"), []
    kwargs = dict(workdir=out, extra_metrics=_counting(calls))
    first = eval_config(train_dir, methods=("ttame", "gradcam"))
    a = evaluate(train_dir, first, **kwargs)
    assert calls == [0, 2, 0, 2]  # 2 methods x 2 batches
    a_dir = a["meta"]["report_dir"]
    assert os.path.dirname(a_dir) == out
    assert os.path.basename(a_dir).startswith(f"test-{pipeline_tests.NUM_IMAGES}img-")
    assert a["meta"]["files"] == {
        name: os.path.join(a_dir, name)
        for name in (report.JSON_FILE, report.MARKDOWN_FILE, report.PLOT_FILE)
    }
    a_bytes = {name: open(path, "rb").read() for name, path in a["meta"]["files"].items()}
    assert json.loads(a_bytes[report.JSON_FILE]) == json.loads(json.dumps(a))

    b = evaluate(train_dir, eval_config(train_dir, methods=("ttame",), num_images=2), **kwargs)
    assert calls[4:] == [0]  # ttame's batch 0 of 2 images is not batch 0 of 4 (other key)
    assert b["meta"]["report_dir"] != a_dir
    assert os.path.basename(b["meta"]["report_dir"]).startswith("test-2img-")

    again = evaluate(train_dir, first, **kwargs)  # same settings: same folder, from the cache
    assert calls[5:] == []
    assert again["meta"]["report_dir"] == a_dir
    assert {n: open(p, "rb").read() for n, p in again["meta"]["files"].items()} == a_bytes

    index = json.load(open(os.path.join(out, report.INDEX_JSON)))
    entries = {e["report"]: e for e in index["reports"]}
    assert sorted(entries) == sorted(os.path.basename(r["meta"]["report_dir"]) for r in (a, b))
    for results in (a, b):
        entry = entries[os.path.basename(results["meta"]["report_dir"])]
        meta = results["meta"]
        assert entry["methods"] == list(results["methods"])
        assert entry["num_images"] == meta["num_images"] and entry["split"] == "test"
        assert entry["step"] == 1
        assert entry["settings"] == json.loads(json.dumps(meta["settings"]))
        assert entry["written"].endswith("+00:00")  # ISO time, UTC
    markdown = open(os.path.join(out, report.INDEX_MARKDOWN)).read()
    for name in entries:
        assert f"]({name}/{report.MARKDOWN_FILE})" in markdown
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]  # atomic writes only


def test_results_without_writing_name_no_files(train_dir, tmp_path):
    out = str(tmp_path / "eval")
    config = eval_config(train_dir, methods=("ttame",), num_images=2)
    results = evaluate(train_dir, config, workdir=out, write=False)
    assert "files" not in results["meta"]
    assert not os.path.exists(results["meta"]["report_dir"])
    assert not os.path.exists(os.path.join(out, report.INDEX_JSON))
