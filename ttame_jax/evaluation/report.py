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
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping

from ttame_jax.evaluation import scoring
from ttame_jax.evaluation.cache import atomic_write_bytes

JSON_FILE, MARKDOWN_FILE, PLOT_FILE = "results.json", "report.md", "road_curves.png"
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


def render_markdown(results: Mapping) -> str:
    """``report.md`` text of a results dict."""
    meta, methods = results["meta"], results["methods"]
    lines = [
        f"# Evaluation: {meta.get('backbone')} — {meta.get('num_images')} {meta.get('split')} "
        "images",
        "",
        f"Checkpoint `{meta.get('checkpoint')}` step {meta.get('step')}; baselines at layer "
        f"`{meta.get('baseline_layer')}`; ROAD compat `{meta.get('road_compat')}`. AD/IC in %; "
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


def write_report(workdir: str, results: Mapping) -> dict[str, str]:
    """Writes the three report files atomically; returns their paths."""
    payloads = {
        JSON_FILE: (json.dumps(results, indent=2, sort_keys=False) + "\n").encode(),
        MARKDOWN_FILE: render_markdown(results).encode(),
        PLOT_FILE: plot_road(results),
    }  # all rendered before anything is replaced
    paths = {}
    for name, data in payloads.items():
        paths[name] = os.path.join(workdir, name)
        atomic_write_bytes(paths[name], data)
    return paths
