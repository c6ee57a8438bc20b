"""``ttame explain``: maps, overlays and top-k classes for image files and folders.

Outputs mirror the inputs under ``--out``: an image's name is its path relative to the
deepest folder holding all inputs (``common.output_names``), e.g. ``a/cat.jpg``, and its
files are that name plus a suffix:

- ``<name>.overlay.png``: the first class's map as a 50 % jet overlay on the preprocessed
  ``S x S`` image (resize + centre crop as in evaluation);
- ``<name>.maps.npy``: float32 ``(k, S, S)`` maps in [0, 1], one per explained class;
- ``<name>.explain.json``: the explained classes (index, name, probability) and the top-k
  predictions;
- with ``--figures``, ``<name>.classes.png``: the maps side by side (paper Figs. 18-19);

plus ``manifest.json`` (versions, config, seed, checkpoint, the images, skipped files and
every output). No output name can be ``manifest.json`` (they all end in the suffixes
above), and distinct inputs have distinct names. Files that ttame did not write are never
replaced (``common.prepare_out``).
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

from ttame_jax.cli import common
from ttame_jax.core.explainer import explain
from ttame_jax.data.preprocess import DECODE_ERRORS
from ttame_jax.progress import progress_bar
from ttame_jax.visualize import save_overlay, topk_figure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_run_arguments(parser, "image files and/or folders (recursive)")
    parser.add_argument("--top-k", type=int, default=3, help="classes explained per image")
    parser.add_argument(
        "--classes", default=None,
        help="comma-separated class indices or names explained for every image (instead of "
             "the top-k predictions)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=16, help="images per batch")
    parser.add_argument("--figures", action="store_true", help="also write <name>.classes.png")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def parse_classes(text: str | None, names: tuple[str, ...]) -> list[int] | None:
    """``"1,goldfish"`` -> class indices; clear error for unknown names or indices."""
    if text is None:
        return None
    lookup = {n.lower(): i for i, n in enumerate(names)}
    out = []
    for item in (t.strip() for t in text.split(",")):
        if item.isdigit() and int(item) < len(names):
            out.append(int(item))
        elif item.lower() in lookup:
            out.append(lookup[item.lower()])
        else:
            raise ValueError(
                f"--classes: {item!r} is neither an index in [0, {len(names)}) nor a class "
                f"name of this backbone (e.g. {names[0]!r})"
            )
    return out


@jax.jit
def _scores(logits):
    return jax.nn.softmax(logits, axis=-1)


def _explain_batch(explainer, x, fixed, top_k):
    """``(classes (B, k), top (B, top_k), probs (B, K), maps (B, k, S, S))`` as NumPy."""
    b = x.shape[0]
    if fixed:
        result = explain(explainer, x, classes=np.tile(fixed, (b, 1)))
        probs = np.asarray(_scores(result.logits))
    else:  # logits first (with a cheap class-0 map), then the maps of the top-k classes
        first = explain(explainer, x, classes=np.zeros((b, 1), np.int32))
        probs = np.asarray(_scores(first.logits))
    top = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    if not fixed:
        result = explain(explainer, x, classes=top)
    return np.asarray(result.target), top, probs, np.asarray(result.maps)


SUFFIXES = {
    "overlay": ".overlay.png",
    "maps": ".maps.npy",
    "json": ".explain.json",
    "figure": ".classes.png",
}


def output_files(name: str, figures: bool) -> dict[str, str]:
    """The files of the image named ``name`` (relative to ``--out``), by kind."""
    return {k: name + suffix for k, suffix in SUFFIXES.items() if figures or k != "figure"}


def _batches(files, size, batch_size):
    """Yields (paths, images (B, S, S, 3), skipped [(path, error)]) over ``files``.

    Unreadable files, images beyond ``preprocess.check_size``'s bounds and images with NaN
    or infinite pixel values (``common.load_input`` checks them) are skipped.
    """
    for start in range(0, len(files), batch_size):
        paths, images, skipped = [], [], []
        for path in files[start : start + batch_size]:
            try:
                images.append(common.load_input(path, size))
                paths.append(path)
            except DECODE_ERRORS as e:
                skipped.append((path, f"{type(e).__name__}: {e}"))
        yield paths, images, skipped


def _plan(args) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Checks ``--out`` (nothing loaded or written before): ``({image: files}, carried)``."""
    owned = common.read_owned(args.out)
    files = common.list_images(args.images, exclude=common.owned_paths(args.out, owned))
    names = common.output_names(args.images, files)
    plan = {f: output_files(n, args.figures) for f, n in zip(files, names, strict=True)}
    outputs = [p for record in plan.values() for p in record.values()]
    return plan, common.prepare_out(args.out, outputs, owned, args.overwrite)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    if args.top_k < 1 or args.batch_size < 1:
        raise ValueError("--top-k and --batch-size must be at least 1")
    plan, carried = _plan(args)
    files = list(plan)
    explainer, config, workdir, step = common.load_checkpoint(args.checkpoint, args.step)
    spec, size = explainer.spec, explainer.spec.input_size
    names = common.class_names(spec)
    fixed = parse_classes(args.classes, names)
    top_k = min(args.top_k, spec.num_classes)
    records, skipped = [], []
    batch = min(args.batch_size, len(files))
    run_record = dict(backbone=spec.name, input_size=size, top_k=top_k, classes=fixed)
    manifest_path = os.path.join(args.out, common.MANIFEST)
    planned = sorted({*carried, *(p for record in plan.values() for p in record.values())})
    common.write_json(  # written first: a crashed run's outputs stay ours (and protected)
        manifest_path,
        common.manifest(
            "explain", argv, config, workdir, step, complete=False, **run_record,
            outputs=planned,
        ),
    )  # fmt: skip
    bar = progress_bar(total=len(files), unit="img", disable=args.no_progress, desc="explain")
    for paths, images, bad in _batches(files, size, batch):
        for path, error in bad:
            common.warn(f"skipping {path}: {error}")
        skipped.extend({"path": p, "error": e} for p, e in bad)
        bar.update(len(bad))
        if not paths:
            continue
        n = len(paths)
        x = np.zeros((batch, size, size, 3), np.float32)  # fixed shape: one compilation
        x[:n] = np.stack(images)
        classes, top, probs, maps = _explain_batch(explainer, jnp.asarray(x), fixed, top_k)
        for i, path in enumerate(paths):
            records.append(_write(args, path, plan[path], x[i], maps[i], classes[i], top[i],
                                  probs[i], names))  # fmt: skip
        bar.update(n)
    bar.close()
    written = {p for record in records for p in record["files"].values()}
    common.write_json(
        manifest_path,
        common.manifest(
            "explain", argv, config, workdir, step, complete=True, **run_record,
            images=records, skipped=skipped, outputs=sorted({*carried, *written}),
        ),
    )  # fmt: skip
    print(f"explained {len(records)} image(s), skipped {len(skipped)}; wrote {args.out}")
    return 0 if records else 1


def _write(args, path, files, image, maps, classes, top, probs, names) -> dict:
    out = args.out

    def entry(c):
        return {"index": int(c), "name": names[c], "probability": float(probs[c])}

    os.makedirs(os.path.dirname(os.path.join(out, files["json"])), exist_ok=True)
    np.save(os.path.join(out, files["maps"]), maps.astype(np.float32))
    save_overlay(os.path.join(out, files["overlay"]), image, maps[0])
    if "figure" in files:
        titles = [f"{names[c]} {probs[c]:.2f}" for c in classes]
        topk_figure(image, maps, titles, save=os.path.join(out, files["figure"]))
    record = {
        "image": os.path.abspath(path),
        "explained": [entry(c) for c in classes],
        "top_k": [entry(c) for c in top],
        "files": files,
    }
    common.write_json(os.path.join(out, files["json"]), record)
    return record
