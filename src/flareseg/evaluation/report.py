"""Summaries and tables of FLARE scores: per-case CSV, summary JSON, text and markdown tables."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from flareseg import labels
from flareseg.evaluation.evaluate import ClassScore
from flareseg.evaluation.rules import ScoringRules
from flareseg.io.atomic import atomic_write_text

METRICS = ("dsc", "nsd")


def _stats(values: list[float]) -> dict[str, float | int]:
    finite = np.array([v for v in values if not math.isnan(v)], dtype=np.float64)
    if finite.size == 0:
        return {"mean": math.nan, "std": math.nan, "median": math.nan, "n": 0}
    return {"mean": float(finite.mean()), "std": float(finite.std()), "median": float(np.median(finite)), "n": int(finite.size)}


def summarise(scores: list[ClassScore], rules: ScoringRules) -> dict:
    """Per-class statistics, the organ mean and the lesion scores, with the rules applied.

    The organ mean is the mean over organ classes of their per-class means (as FLARE
    reports ``Organ_DSC``/``Organ_NSD``); classes never evaluated are left out of it.
    """
    class_ids = sorted({s.class_id for s in scores})
    per_class = {}
    for class_id in class_ids:
        mine = [s for s in scores if s.class_id == class_id]
        per_class[rules.class_name(class_id)] = {
            "id": class_id,
            **{metric: _stats([getattr(s, metric) for s in mine]) for metric in METRICS},
        }
    organs = [v for v in per_class.values() if v["id"] != labels.LESION]
    organ_mean = {
        metric: _mean([v[metric]["mean"] for v in organs]) for metric in METRICS
    }
    lesion = per_class.get(rules.class_name(labels.LESION))
    return {
        "rules": rules.describe(),
        "cases": len({s.case_id for s in scores}),
        "classes": per_class,
        "organ_mean": organ_mean,
        "lesion": {metric: lesion[metric]["mean"] for metric in METRICS} if lesion else None,
    }


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def write_case_csv(scores: list[ClassScore], path: Path, rules: ScoringRules) -> None:
    """One row per case and class, with the rule set and script revision on every row.

    A class not evaluated has empty DSC/NSD cells.
    """
    revision = f"{rules.script}@{rules.revision}"
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["case", "class_id", "class", "dsc", "nsd", "rules", "script_revision"])
    for s in scores:
        writer.writerow([s.case_id, s.class_id, rules.class_name(s.class_id), _cell(s.dsc), _cell(s.nsd),
                         rules.name, revision])
    atomic_write_text(path, text.getvalue())


def write_summary_json(summary: dict, path: Path) -> None:
    """The summary as JSON; NaN (not evaluated) becomes null."""
    atomic_write_text(path, json.dumps(_nan_to_none(summary), indent=2))


def _nan_to_none(value):
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _cell(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6f}"


def format_table(summary: dict, markdown: bool = False) -> str:
    """Per-class mean +- std of DSC and NSD, the organ mean, and the rules they follow."""
    header = ["class", "DSC", "NSD", "n"]
    rows = []
    for name, entry in summary["classes"].items():
        rows.append([name, _pm(entry["dsc"]), _pm(entry["nsd"]), str(entry["dsc"]["n"])])
    organ = summary["organ_mean"]
    rows.append(["organ mean", _num(organ["dsc"]), _num(organ["nsd"]), ""])
    rules = summary["rules"]
    footer = f"rules {rules['name']}: {rules['repository']} {rules['script']} @ {rules['revision']} ({rules['date']})"
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * 3) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join([*lines, "", footer])
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]

    def fmt(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([fmt(header), *(fmt(r) for r in rows), footer])


def _pm(stats: dict) -> str:
    return "-" if stats["n"] == 0 else f"{stats['mean']:.4f} ± {stats['std']:.4f}"


def _num(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"
