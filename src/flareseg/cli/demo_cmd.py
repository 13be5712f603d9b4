"""``flareseg demo``: segment the bundled sample CT with the bundled default model."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(subparsers) -> None:
    demo = subparsers.add_parser(
        "demo", help="segment the bundled sample CT with the default model",
        description="Segment the bundled sample CT with the bundled default model, write the mask, and "
        "score it against the bundled reference labels (TotalSegmentator output on the same scan, which "
        "was also part of the default model's training data: a check that the pipeline works, not a "
        "measure of accuracy on new scans).",
    )
    demo.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default: demo_output)")
    demo.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    import time

    from flareseg.data import sample_ct_path, sample_labels_path
    from flareseg.inference.predict import PredictOptions, open_model, predict

    start = time.perf_counter()
    model = open_model(PredictOptions())
    path = args.out / "sample_mask.nii.gz"
    mask = predict(sample_ct_path(), path, model)
    seconds = time.perf_counter() - start
    print(f"wrote {path}: {mask.geometry.describe()}, {seconds:.1f} s with model loading ({model.backend} backend)")

    from flareseg.evaluation.evaluate import score_case
    from flareseg.evaluation.report import format_table, summarise
    from flareseg.evaluation.rules import DEFAULT_RULES, rules_for
    from flareseg.io import read_volume

    rules = rules_for(DEFAULT_RULES)
    scores = score_case(read_volume(sample_labels_path()), mask, "sample", rules, threads=2)
    print("DSC/NSD against the bundled reference labels (TotalSegmentator output; this scan was in the")
    print("default model's training data, so this shows the pipeline works, not accuracy on new scans):")
    print(format_table(summarise(scores, rules)))
    return 0
