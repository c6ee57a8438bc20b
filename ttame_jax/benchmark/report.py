"""``report.json`` and ``report.md`` of the synthetic benchmark.

One table per backbone, one row per method::

    | Method | FP | AD↓ / IC↑ (100, 50, 15 % kept) | MoRF↓ | LeRF↑ | Ins.↑ | Del.↓ |
      Pointing↑ | Mass in evidence↑ | Counterfactual↑ |

AD/IC, ROAD (accuracy averaged over 10-90 % removed) and insertion/deletion as in
:mod:`ttame_jax.evaluation.report`; pointing game and mass inside the evidence in %
over the single-object images among the evaluated ones; counterfactual = % of
two-object images where both class maps prefer their own object
(:mod:`ttame_jax.benchmark.localization`). The text also states each backbone's
test accuracy, the chance levels, and whether T-TAME localises better than Grad-CAM.
"""

from __future__ import annotations

import json
import os
import resource

from ttame_jax.config import to_dict
from ttame_jax.fileio import atomic_write_bytes
from ttame_jax.machine import cpu_model

COLUMNS = (  # (header, better, getter on a row dict of report.json)
    ("FP↓", "low", "fp"),
    ("AD↓100", "low", "ad_100"),
    ("IC↑100", "high", "ic_100"),
    ("AD↓50", "low", "ad_50"),
    ("IC↑50", "high", "ic_50"),
    ("AD↓15", "low", "ad_15"),
    ("IC↑15", "high", "ic_15"),
    ("MoRF↓", "low", "road_morf"),
    ("LeRF↑", "high", "road_lerf"),
    ("Ins.↑", "high", "insertion_auc"),
    ("Del.↓", "low", "deletion_auc"),
    ("Pointing↑", "high", "pointing_game"),
    ("Mass in evid.↑", "high", "mass_inside"),
    ("Counterf.↑", "high", "counterfactual"),
)
METRICS = tuple(key for _, _, key in COLUMNS)


def cpu_seconds() -> float:
    """CPU seconds used so far by this process, all threads (XLA's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine() -> dict:
    """Where the timings were measured: CPU model, cores, JAX backend."""
    import jax

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "backend": jax.default_backend()}


def _row(m: dict, cf_rate: float) -> dict:
    """The flat numbers of one method (percentages except FP and the AUCs)."""
    row = {"fp": m["fp"]}
    for kept in ("100", "50", "15"):
        row[f"ad_{kept}"], row[f"ic_{kept}"] = m["ad"][kept], m["ic"][kept]
    row["road_morf"] = m["road"]["morf"]["accuracy_avg"]
    row["road_lerf"] = m["road"]["lerf"]["accuracy_avg"]
    row["insertion_auc"] = m.get("insertion_auc", float("nan"))
    row["deletion_auc"] = m.get("deletion_auc", float("nan"))
    extra = m["extra"]
    for key in ("pointing_game", "mass_inside"):
        row[key] = float("nan") if extra.get(key) is None else 100.0 * extra[key]
    row["counterfactual"] = 100.0 * cf_rate
    row["seconds_per_image"] = m["seconds_per_image"]
    return row


def _seed_rows(per_seed: dict) -> tuple[dict, dict, dict]:
    """T-TAME's rows per seed, their mean row and the ``[min, max]`` range of each metric."""
    rows = {s: _row(r["evaluation"], r["counterfactual"]) for s, r in per_seed.items()}
    keys = [k for k in next(iter(rows.values())) if k != "fp"]
    mean = dict(next(iter(rows.values())))
    spread = {}
    for key in keys:
        values = [r[key] for r in rows.values()]
        mean[key] = sum(values) / len(values)
        spread[key] = [min(values), max(values)]
    return rows, mean, spread


def build(config, per_backbone: dict, *, seconds: float) -> dict:
    """The ``report.json`` dict: config, per backbone the table rows and all raw numbers.

    With T-TAME trained over several seeds, its row is the mean over the seeds,
    ``spread["ttame"]`` the ``[min, max]`` of each metric and ``ttame_per_seed`` each
    seed's row; the baselines do not depend on the seed (their spread is nil).
    """
    out = {
        "config": to_dict(config),
        "seconds": round(seconds, 1),
        "machine": machine(),
        "seeds": list(config.benchmark.ttame_seeds),
    }
    out["backbones"] = {}
    for name, b in per_backbone.items():
        methods = b["evaluation"]["methods"]
        rates = b["counterfactual"]["success_rate"]
        rows = {m: _row(numbers, rates[m]) for m, numbers in methods.items()}
        seeds = b.get("ttame_seeds", {"per_seed": {}, "median": None})
        spread, per_seed = {}, {}
        if seeds["per_seed"]:
            per_seed, rows["ttame"], spread["ttame"] = _seed_rows(seeds["per_seed"])
        area = next(iter(methods.values()))["extra"].get("evidence_area")
        out["backbones"][name] = {
            "test_accuracy": b["test_accuracy"],
            "meets_min_accuracy": b["test_accuracy"] >= config.classifier.min_accuracy,
            "num_images": b["evaluation"]["meta"]["num_images"],
            "num_counterfactual_images": b["counterfactual"]["num_images"],
            "evidence_area_percent": None if area is None else 100.0 * area,
            "rows": rows,
            "spread": spread,
            "ttame_per_seed": {str(s): r for s, r in per_seed.items()},
            "median_seed": seeds["median"],
            "figures": b["counterfactual"]["figures"],
            "seconds": b["seconds"],
            "cpu_seconds": b.get("cpu_seconds", {}),
            "classifier": b["classifier"],
            "evaluation": b["evaluation"],
        }
    return out


def _cell(value, key: str) -> str:
    if key == "fp":
        return f"{int(value)}"
    if key.endswith("auc"):
        return f"{value:.4f}"
    return f"{value:.1f}"


def _table(rows: dict, spread: dict | None = None) -> list[str]:
    lines = ["| Method | " + " | ".join(h for h, _, _ in COLUMNS) + " |"]
    lines.append("|---|" + "---:|" * len(COLUMNS))
    best = {}
    for _, better, key in COLUMNS:
        values = [r[key] for r in rows.values() if r[key] == r[key]]
        best[key] = (min if better == "low" else max)(values) if values else None
    for name, r in rows.items():
        cells = []
        for _, _, key in COLUMNS:
            text = _cell(r[key], key)
            text = f"**{text}**" if r[key] == best[key] else text
            lo_hi = (spread or {}).get(name, {}).get(key)
            if lo_hi is not None:  # mean (min–max) over the seeds
                text += f" ({_cell(lo_hi[0], key)}–{_cell(lo_hi[1], key)})"
            cells.append(text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def verdict(rows: dict, spread: dict | None = None) -> str:
    """One sentence: does T-TAME localise better than Grad-CAM on this backbone?

    With ``spread`` (T-TAME's ``[min, max]`` over seeds), a difference counts only when
    Grad-CAM lies outside T-TAME's range; otherwise it is "within the seed range".
    """
    if "ttame" not in rows or "gradcam" not in rows:
        return "T-TAME vs Grad-CAM: not both evaluated."
    t, g = rows["ttame"], rows["gradcam"]
    ranges = (spread or {}).get("ttame", {})
    parts, wins, losses = [], 0, 0
    for key, label in (
        ("pointing_game", "pointing game"),
        ("mass_inside", "mass inside the evidence"),
        ("counterfactual", "counterfactual check"),
    ):
        lo, hi = ranges.get(key, (t[key], t[key]))
        better, worse = lo > g[key], hi < g[key]
        wins, losses = wins + better, losses + worse
        word = "better" if better else ("worse" if worse else "equal")
        if key in ranges and not (better or worse):
            word = "within the seed range"
        shown = f"{t[key]:.1f}" + (f" ({lo:.1f}–{hi:.1f})" if key in ranges else "")
        parts.append(f"{label} {shown} vs {g[key]:.1f} ({word})")
    if wins and not losses:
        summary = "better than" if wins == 3 else "at least as well as"
    else:
        summary = "not better than" if not wins else "mixed against"
    return f"T-TAME localises {summary} Grad-CAM here: " + "; ".join(parts) + "."


def render_markdown(result: dict) -> str:
    """``report.md`` text."""
    cfg = result["config"]
    lines = [
        "# Synthetic ground-truth benchmark",
        "",
        f"Generated {cfg['data']['train_size']} training images at the backbones' input size "
        "(a target object whose fill pattern is the class, among clutter); backbones "
        "trained from scratch, then T-TAME, then every method explained the top-1 class of "
        f"the same test images. Total time {result['seconds']:.0f} s{_on_machine(result)}.",
        "",
        "Columns: FP = forward passes per explanation; AD/IC (%) at 100/50/15 % of the pixels "
        "kept; MoRF/LeRF = ROAD accuracy (%) averaged over 10-90 % removed; Ins./Del. = "
        "insertion/deletion AUC; Pointing = % of single-object images whose map maximum lies "
        "in the target object; Mass in evid. = % of the map's mass on the target object; "
        "Counterf. = % of two-object images where the map of each object's class puts more "
        "mass on that object than on the other. Best per column in **bold**.",
    ]
    for name, b in result["backbones"].items():
        ok = "meets" if b["meets_min_accuracy"] else "DOES NOT meet"
        area = b["evidence_area_percent"]
        lines += [
            "",
            f"## {name}",
            "",
            f"Backbone test accuracy: **{100 * b['test_accuracy']:.1f} %** ({ok} the "
            f"{100 * cfg['classifier']['min_accuracy']:.0f} % target). Evaluated on "
            f"{b['num_images']} test images; counterfactual check on "
            f"{b['num_counterfactual_images']} two-object images. Chance level of "
            f"'Mass in evid.' (a uniform map): {area:.1f} %.",
            "",
            *_table(b["rows"], b.get("spread")),
            "",
            _seed_note(result.get("seeds", []), b),
            "",
            verdict(b["rows"], b.get("spread")),
            "",
            "Seconds per stage (wall / CPU): "
            + ", ".join(
                f"{k} {v:.0f} / {b.get('cpu_seconds', {}).get(k, float('nan')):.0f}"
                for k, v in b["seconds"].items()
            )
            + "; per explanation: "
            + ", ".join(f"{m} {r['seconds_per_image']:.3g}" for m, r in b["rows"].items())
            + ".",
            "",
            "Figures: " + ", ".join(f"`{os.path.basename(p)}`" for p in b["figures"]),
        ]
    return "\n".join(lines) + "\n"


def _on_machine(result: dict) -> str:
    m = result.get("machine")  # absent in reports of earlier versions
    return f" on {m['cpu']} ({m['cores']} cores, JAX {m['backend']})" if m else ""


def _seed_note(seeds: list, b: dict) -> str:
    if not b.get("spread"):
        return "T-TAME trained with one seed: no spread measured."
    return (
        f"T-TAME: mean (min–max) over {len(seeds)} training seeds {seeds} (its attention's "
        "initialisation, data order and generated training sample change; the backbone and the "
        f"test images do not); figures show the median seed ({b['median_seed']}, by the "
        "pointing game). The baselines need no training: one value each. A difference smaller "
        "than T-TAME's range is no verdict."
    )


def summary_lines(result: dict) -> str:
    """A short stdout summary: accuracy and verdict per backbone."""
    return "\n".join(
        f"{name}: test accuracy {100 * b['test_accuracy']:.1f} %. "
        f"{verdict(b['rows'], b.get('spread'))}"
        for name, b in result["backbones"].items()
    )


def write(workdir: str, result: dict) -> dict[str, str]:
    """Writes ``report.json`` and ``report.md`` (atomically); returns their paths."""
    paths = {"json": os.path.join(workdir, "report.json"), "md": os.path.join(workdir, "report.md")}
    atomic_write_bytes(paths["json"], (json.dumps(result, indent=2) + "\n").encode())
    atomic_write_bytes(paths["md"], render_markdown(result).encode())
    return paths
