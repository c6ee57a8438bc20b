"""``ttame sanity``: cascading randomisation of a trained explainer (paper Fig. 17).

Writes into ``--out``: ``sanity.png`` (rows: images; columns: input, original map, the
map after each step), ``sanity.json`` (steps, per-image and mean Spearman / SSIM per step,
explained classes) and ``sanity.csv`` (one row per step: mean and per-image values), plus
``manifest.json`` (written first, listing these files as ttame's). Unreadable images are
reported and skipped. Files that ttame did not write are never replaced
(``common.prepare_out``).
"""

from __future__ import annotations

import argparse
import csv
import os

import numpy as np

from ttame_jax.cli import common
from ttame_jax.data.preprocess import DECODE_ERRORS
from ttame_jax.sanity import PARTS, cascading_randomization
from ttame_jax.visualize import sanity_figure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_run_arguments(parser, "image files and/or folders (a few images)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help="cascades to run: backbone, attention or both"
    )


OUTPUTS = ("sanity.png", "sanity.json", "sanity.csv")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    owned = common.read_owned(args.out)
    files = common.list_images(args.images, exclude=common.owned_paths(args.out, owned))
    carried = common.prepare_out(args.out, list(OUTPUTS), owned, args.overwrite)
    explainer, config, workdir, step = common.load_checkpoint(args.checkpoint, args.step)
    manifest_path = os.path.join(args.out, common.MANIFEST)
    outputs = sorted({*carried, *OUTPUTS})

    def write_manifest(complete: bool, outputs: list[str], **extra) -> None:
        record = common.manifest(
            "sanity", argv, config, workdir, step, complete=complete,
            sanity_seed=args.seed, parts=list(parts), outputs=outputs, **extra,
        )  # fmt: skip
        common.write_json(manifest_path, record)

    write_manifest(False, outputs)  # written first: a crashed run's outputs stay ours
    images, used, skipped = [], [], []
    for path in files:
        try:
            images.append(common.load_input(path, explainer.spec.input_size))
            used.append(path)
        except DECODE_ERRORS as e:
            common.warn(f"skipping {path}: {type(e).__name__}: {e}")
            skipped.append({"path": path, "error": f"{type(e).__name__}: {e}"})
    if not images:
        common.warn("no readable image; nothing to do")
        write_manifest(True, carried, images=used, skipped=skipped)
        return 1
    images = np.stack(images)
    result = cascading_randomization(explainer, images, seed=args.seed, parts=parts)
    sanity_figure(
        images, result.maps, result.steps, scores=result.spearman,
        save=os.path.join(args.out, "sanity.png"),
    )  # fmt: skip
    names = common.class_names(explainer.spec)
    summary = {
        "steps": result.steps,
        "images": used,
        "target": [{"index": int(t), "name": names[t]} for t in result.target],
        "spearman": result.spearman.tolist(),
        "ssim": result.ssim.tolist(),
        "mean_spearman": np.nanmean(result.spearman, axis=0).tolist(),
        "mean_ssim": result.ssim.mean(axis=0).tolist(),
    }
    common.write_json(os.path.join(args.out, "sanity.json"), summary)
    _write_csv(os.path.join(args.out, "sanity.csv"), result)
    write_manifest(True, outputs, images=used, skipped=skipped)
    rows = zip(result.steps, summary["mean_spearman"], summary["mean_ssim"], strict=True)
    for name, rho, s in rows:
        print(f"{name:40s} spearman {rho:6.3f}  ssim {s:6.3f}")
    return 0


def _write_csv(path: str, result) -> None:
    n = result.spearman.shape[0]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["step", "unit", "mean_spearman", "mean_ssim"]
            + [f"spearman_{i}" for i in range(n)] + [f"ssim_{i}" for i in range(n)]
        )  # fmt: skip
        for t, name in enumerate(result.steps):
            rho, s = result.spearman[:, t], result.ssim[:, t]
            w.writerow(
                [t + 1, name, f"{np.nanmean(rho):.6f}", f"{s.mean():.6f}"]
                + [f"{v:.6f}" for v in rho] + [f"{v:.6f}" for v in s]
            )  # fmt: skip
