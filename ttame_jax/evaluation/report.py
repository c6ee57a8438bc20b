"""The evaluation report: results.json, report.md and road_curves.png.

``report.md`` has the layout of the paper's Tables 2-5 with one row per method::

    | Method | AD↓(100%) | IC↑(100%) | AD↓(50%) | IC↑(50%) | AD↓(15%) | IC↑(15%) |
      MoRF↓ | LeRF↑ | FP↓ |

(MoRF/LeRF = ROAD averages over the 7 removal levels of the accuracy, the score of
the paper), then ROAD per level, the target-probability variant, insertion/
deletion AUC and extra metrics when computed, and seconds per explanation. Best
value of a column in **bold**, second best underlined, as in the paper.
``road_curves.png`` plots MoRF and LeRF against the removed percentage, one line
per method (the paper's Figs. 9-14). Every file is written to a temporary file
and renamed, and only after all numbers exist, so a failed run never damages the
report of an earlier, finished one.

Each evaluation gets its own folder, named after the settings that change its
numbers, and ``index.json`` / ``index.md`` list every report of the workdir::

    workdir/<split>-<n>img-<hash>/report.md, results.json, road_curves.png
    workdir/index.json, workdir/index.md
    workdir/cache/                          shared by all reports

A rerun with the same settings rewrites the same folder; other settings (methods,
options, number of images, ...) get another one, so no report replaces another.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import importlib.util
import io
import json
import logging
import os
from collections.abc import Iterator, Mapping

from ttame_jax.evaluation import scoring
from ttame_jax.evaluation.cache import key_hash
from ttame_jax.fileio import atomic_write_bytes

JSON_FILE, MARKDOWN_FILE, PLOT_FILE = "results.json", "report.md", "road_curves.png"
INDEX_JSON, INDEX_MARKDOWN = "index.json", "index.md"
_KEPT = [scoring.percent_label(f) for f in scoring.ADIC_KEPT]


def summarise(per_method: Mapping[str, tuple], meta: Mapping) -> dict:
    """The results dict: ``{"meta": meta, "methods": {name: numbers}}``.

    ``per_method`` maps a name to ``(Method, cached batch arrays)``; numbers are
    :func:`ttame_jax.evaluation.scoring.summarise` plus ``fp`` and ``options``.
    """
    methods = {}
    for name, (method, rows) in per_method.items():
        numbers = scoring.summarise(rows)
        methods[name] = {"fp": method.fp, "options": dict(method.options), **numbers}
    return {"meta": dict(meta), "methods": methods}


def _columns(results: Mapping) -> list[tuple[str, str, callable]]:
    """(header, better ('low'|'high'), getter) of the main table."""
    cols = []
    for p in _KEPT:
        cols.append((f"AD↓({p}%)", "low", lambda m, p=p: m["ad"][p]))
        cols.append((f"IC↑({p}%)", "high", lambda m, p=p: m["ic"][p]))
    cols.append(("MoRF↓", "low", lambda m: m["road"]["morf"]["accuracy_avg"]))
    cols.append(("LeRF↑", "high", lambda m: m["road"]["lerf"]["accuracy_avg"]))
    first = next(iter(results["methods"].values()))
    if "insertion_auc" in first:
        cols.append(("Ins.↑", "high", lambda m: m["insertion_auc"]))
        cols.append(("Del.↓", "low", lambda m: m["deletion_auc"]))
    cols.append(("FP↓", "low", lambda m: m["fp"]))
    return cols


def _fmt(value, header: str) -> str:
    if header.startswith("FP"):
        return f"{int(value)}"
    if header.startswith(("Ins", "Del")):
        return f"{value:.4f}"
    return f"{value:.2f}%"


def _table(results: Mapping, cols) -> list[str]:
    """Markdown rows; best value of each column bold, second best underlined."""
    methods = results["methods"]
    lines = [
        "| Method | " + " | ".join(h for h, _, _ in cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    marks = {}
    for header, better, get in cols:
        values = sorted({get(m) for m in methods.values()}, reverse=better == "high")
        marks[header] = {v: ("**", "**") for v in values[:1]}
        if len(methods) > 2:
            marks[header].update({v: ("<u>", "</u>") for v in values[1:2]})
    for name, m in methods.items():
        cells = []
        for header, _, get in cols:
            left, right = marks[header].get(get(m), ("", ""))
            cells.append(f"{left}{_fmt(get(m), header)}{right}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _road_table(results: Mapping, score: str) -> list[str]:
    levels = list(next(iter(results["methods"].values()))["road"]["morf"][score])
    head = " | ".join(f"{o}({v}%)" for o in ("MoRF", "LeRF") for v in levels)
    lines = [f"| Method | {head} |", "|---|" + "---:|" * (2 * len(levels))]
    for name, m in results["methods"].items():
        cells = [f"{m['road'][o][score][v]:.2f}" for o in ("morf", "lerf") for v in levels]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _cam_backbone_note(meta: Mapping) -> str:
    """Where the CAM baselines ran on another classifier (``eval.cam_backbone``)."""
    name = meta.get("cam_backbone")
    if not name:
        return ""
    return f" (CAM baselines: explained, targeted and scored on `{name}`)"


def render_markdown(results: Mapping) -> str:
    """``report.md`` text of a results dict."""
    meta, methods = results["meta"], results["methods"]
    lines = [
        f"# Evaluation: {meta.get('backbone')} — {meta.get('num_images')} {meta.get('split')} "
        "images",
        "",
        f"Checkpoint `{meta.get('checkpoint')}` step {meta.get('step')}; baselines at layer "
        f"`{meta.get('baseline_layer')}`{_cam_backbone_note(meta)}; ROAD compat "
        f"`{meta.get('road_compat')}`. AD/IC in %; "
        "MoRF/LeRF = ROAD accuracy (%) averaged over 10-90 % removed; FP = backbone forward "
        "passes per explanation. Best in **bold**, second <u>underlined</u>.",
        "",
        *_table(results, _columns(results)),
        "",
        "## ROAD accuracy per removed percentage (%)",
        "",
        *_road_table(results, "accuracy"),
        "",
        "## ROAD mean target probability per removed percentage (%)",
        "",
        *_road_table(results, "probability"),
        "",
        "## Other numbers",
        "",
        "| Method | prob. MoRF avg | prob. LeRF avg | s / explanation | extra |",
        "|---|---:|---:|---:|---|",
    ]
    for name, m in methods.items():
        extra = ", ".join(
            f"{k}={'n/a' if v is None else f'{v:.4f}'}" for k, v in m["extra"].items()
        )
        lines.append(
            f"| {name} | {m['road']['morf']['probability_avg']:.2f} | "
            f"{m['road']['lerf']['probability_avg']:.2f} | {m['seconds_per_image']:.4g} | "
            f"{extra or '-'} |"
        )
    return "\n".join(lines) + "\n"


def plot_road(results: Mapping) -> bytes:
    """PNG bytes: ROAD MoRF and LeRF accuracy vs % removed, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    titles = {"morf": "MoRF (lower is better)", "lerf": "LeRF (higher is better)"}
    for ax, (order, title) in zip(fig.subplots(1, 2), titles.items(), strict=True):
        for name, m in results["methods"].items():
            curve = m["road"][order]["accuracy"]
            ax.plot([int(v) for v in curve], list(curve.values()), marker="o", label=name)
        ax.set(title=title, xlabel="pixels removed (%)", ylabel="accuracy (%)", ylim=(0, 100))
        ax.grid(alpha=0.3)
    fig.axes[0].legend()
    fig.suptitle(f"ROAD, {results['meta'].get('backbone')} ({results['meta'].get('road_compat')})")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def report_name(settings: Mapping) -> str:
    """``<split>-<n>img-<hash of settings>``: the folder of the report of ``settings``.

    ``settings`` holds everything that changes the numbers (at least ``split`` and
    ``num_images``, which also make the name readable).
    """
    return f"{settings['split']}-{settings['num_images']}img-{key_hash(settings)}"


def can_plot() -> bool:
    """Whether matplotlib is installed: ``road_curves.png`` needs it, nothing else does (a
    minimal accelerator image may lack it; the numbers are in results.json either way)."""
    return importlib.util.find_spec("matplotlib") is not None


def report_files(folder: str) -> dict[str, str]:
    """``{file name: path}`` of the report files in ``folder``: results.json, report.md and,
    when matplotlib is installed (:func:`can_plot`), road_curves.png."""
    names = (JSON_FILE, MARKDOWN_FILE) + ((PLOT_FILE,) if can_plot() else ())
    return {name: os.path.join(folder, name) for name in names}


def write_report(folder: str, results: Mapping) -> dict[str, str]:
    """Writes the report files of :func:`report_files` into ``folder`` atomically; returns
    their paths. Without matplotlib the plot is skipped with a warning instead of failing
    after the run."""
    paths = report_files(folder)
    payloads = {
        JSON_FILE: (json.dumps(results, indent=2, sort_keys=False) + "\n").encode(),
        MARKDOWN_FILE: render_markdown(results).encode(),
    }
    if PLOT_FILE in paths:
        payloads[PLOT_FILE] = plot_road(results)  # all rendered before anything is replaced
    else:
        logging.warning(
            "%s not written: matplotlib is not installed (pip install matplotlib); the "
            "ROAD curves are in %s and %s",
            PLOT_FILE,
            JSON_FILE,
            MARKDOWN_FILE,
        )
    for name, data in payloads.items():
        atomic_write_bytes(paths[name], data)
    return paths


@contextlib.contextmanager
def _index_lock(workdir: str) -> Iterator[None]:
    """Holds an exclusive lock on the folder ``workdir`` (evaluations side by side)."""
    fd = os.open(workdir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the descriptor is closed
        yield
    finally:
        os.close(fd)


def _index_entry(workdir: str, name: str) -> dict | None:
    """The index entry of report folder ``name``; ``None`` if it holds no report."""
    path = os.path.join(workdir, name, JSON_FILE)
    try:
        with open(path) as f:
            results = json.load(f)
        meta, methods = results["meta"], list(results["methods"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not a report folder (e.g. the cache)
    utc = datetime.timezone.utc  # noqa: UP017 (datetime.UTC needs Python 3.11)
    written = datetime.datetime.fromtimestamp(os.path.getmtime(path), utc)
    return {
        "report": name,
        "written": written.isoformat(timespec="seconds"),
        "step": meta.get("step"),
        "split": meta.get("split"),
        "num_images": meta.get("num_images"),
        "methods": methods,
        "road_compat": meta.get("road_compat"),
        "insertion_deletion": meta.get("insertion_deletion"),
        "settings": meta.get("settings"),
    }


def render_index(workdir: str, entries: list[dict]) -> str:
    """``index.md`` text: one row per report, oldest first."""
    lines = [
        f"# Evaluation reports in `{workdir}`",
        "",
        "| report | written (UTC) | step | split | images | methods | ROAD compat | ins./del. |",
        "|---|---|---:|---|---:|---|---|---|",
    ]
    for e in entries:
        lines.append(
            f"| [{e['report']}]({e['report']}/{MARKDOWN_FILE}) | {e['written']} | {e['step']} | "
            f"{e['split']} | {e['num_images']} | {', '.join(e['methods'])} | "
            f"{e['road_compat']} | {'yes' if e['insertion_deletion'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def update_index(workdir: str) -> dict[str, str]:
    """Rewrites ``index.json`` and ``index.md`` from the report folders of ``workdir``.

    The index is rebuilt from the folders (so it heals itself), under a lock and with
    atomic writes. Returns the two paths.
    """
    with _index_lock(workdir):
        names = sorted(n for n in os.listdir(workdir) if os.path.isdir(os.path.join(workdir, n)))
        entries = [e for e in (_index_entry(workdir, n) for n in names) if e is not None]
        entries.sort(key=lambda e: (e["written"], e["report"]))
        paths = {INDEX_JSON: os.path.join(workdir, INDEX_JSON),
                 INDEX_MARKDOWN: os.path.join(workdir, INDEX_MARKDOWN)}  # fmt: skip
        text = json.dumps({"workdir": workdir, "reports": entries}, indent=2) + "\n"
        atomic_write_bytes(paths[INDEX_JSON], text.encode())
        atomic_write_bytes(paths[INDEX_MARKDOWN], render_index(workdir, entries).encode())
    return paths
