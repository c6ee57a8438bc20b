"""Evaluates a trained T-TAME checkpoint and baselines; writes the paper-style report.

    python evaluate.py --config=configs/vit.py --checkpoint=runs/vit \
        --config.data.root=/data/imagenet --config.data.test_list=lists/test.txt \
        --methods=ttame,gradcam,gradcampp,scorecam,ablationcam,rise

writes ``report.md``, ``results.json`` and ``road_curves.png`` into ``--workdir``
(default ``<checkpoint>/eval``). Per-batch results are cached there, so rerunning
the same command after an interruption continues where it stopped. Without
``--config`` the checkpoint's own ``config.json`` is used. The logic lives in
``ttame_jax.evaluation.evaluate``; docs/evaluation.md explains every column.
"""

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Training config (its data section picks the test split).", lock_config=True
)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Workdir of a train.py run.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Report/cache folder (default <checkpoint>/eval).")
_METHODS = flags.DEFINE_list("methods", ["ttame"], "Methods: ttame and/or baseline names.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_NUM_IMAGES = flags.DEFINE_integer("num_images", None, "Evaluate the first N images (default all).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per batch (= cache granularity).")
_ROAD_COMPAT = flags.DEFINE_enum(
    "road_compat", "grad-cam", ["grad-cam", "road"], "ROAD pixel selection (grad-cam = paper)."
)
_INS_DEL = flags.DEFINE_bool("insertion_deletion", False, "Also compute insertion/deletion AUC.")
_INS_DEL_STEPS = flags.DEFINE_integer(
    "insertion_deletion_steps",
    100,
    "Curve steps of insertion/deletion (RISE: H*W/224 pixels each).",
)
_SPLIT = flags.DEFINE_enum("split", "test", ["test", "val"], "Data split to evaluate.")
_RISE_MASKS = flags.DEFINE_integer("rise_masks", None, "RISE N (default 8000; paper VGG-16: 4000).")
_RISE_SEED = flags.DEFINE_integer("rise_seed", 0, "Seed of the RISE masks.")
_CHUNK = flags.DEFINE_integer(
    "chunk_size", None, "Masked inputs per backbone call for scorecam/ablationcam/rise."
)
_LAYER = flags.DEFINE_string(
    "baseline_layer", None, "Tap of the CAM baselines (default: the last T-TAME tap)."
)
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.")
flags.mark_flags_as_required(["checkpoint"])


def method_options(methods) -> dict:
    """Per-method options from the flags (only for the methods being evaluated)."""
    options = {}
    if "rise" in methods:
        options["rise"] = {"seed": _RISE_SEED.value}
        if _RISE_MASKS.value is not None:
            options["rise"]["n_masks"] = _RISE_MASKS.value
    if _LAYER.value:
        for name in ("gradcam", "gradcampp", "scorecam", "ablationcam"):
            if name in methods:
                options.setdefault(name, {})["layer"] = _LAYER.value
    if _CHUNK.value is not None:
        for name in ("scorecam", "ablationcam", "rise"):
            if name in methods:
                options.setdefault(name, {})["batch_size"] = _CHUNK.value
    return options


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from ttame_jax.evaluation import evaluate

    results = evaluate(
        _CONFIG.value,
        _CHECKPOINT.value,
        _WORKDIR.value,
        _METHODS.value,
        step=_STEP.value,
        num_images=_NUM_IMAGES.value,
        batch_size=_BATCH_SIZE.value,
        road_compat=_ROAD_COMPAT.value,
        insertion_deletion=_INS_DEL.value,
        insertion_deletion_steps=_INS_DEL_STEPS.value,
        method_options=method_options(_METHODS.value),
        split=_SPLIT.value,
        progress=_PROGRESS.value,
    )
    from ttame_jax.evaluation.report import render_markdown

    print(render_markdown(results))
    logging.info("report written to %s", results["meta"]["workdir"])


if __name__ == "__main__":
    app.run(main)
