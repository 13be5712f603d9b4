"""``flareseg dataset check``: verify a dataset folder in the nnU-Net v2 layout."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path


def add_parsers(subparsers) -> None:
    dataset = subparsers.add_parser("dataset", help="work with training datasets (nnU-Net v2 layout)")
    actions = dataset.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="verify images, labels, grids and label values of a dataset folder",
        description="Check a dataset folder (dataset.json, imagesTr/, labelsTr/): readable 3D images, labels on "
        "their image's grid, label values declared in dataset.json, no missing labels. Label values are read "
        "by their names in dataset.json; prints the mapping to flareseg classes it used and a per-class "
        "summary; exits 1 when it finds errors.",
    )
    check.add_argument("dataset", type=Path, help="dataset folder")
    check.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    check.add_argument("--quiet", action="store_true", help="no progress bar")
    check.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    from flareseg.datasets.check import check_dataset, format_report

    report = check_dataset(args.dataset, progress=not args.quiet)
    print(format_report(report))
    if args.json:
        payload = {
            "dataset": str(report.spec.root),
            "label_mapping": [asdict(entry) for entry in report.spec.mapping.entries],
            "cases": report.kinds,
            "class_voxels": report.class_voxels,
            "class_cases": report.class_cases,
            "problems": [asdict(p) for p in report.problems],
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 1 if report.errors else 0
