"""``flareseg qc``: a quality-control report over a folder of predicted masks."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(subparsers) -> None:
    from flareseg.cli.arguments import positive_int

    qc = subparsers.add_parser(
        "qc", help="quality-control report over a folder of predicted masks",
        description="For every mask in OUT (the output folder of flareseg predict) and its CT: per organ the "
        "volume (mL), 26-connected components, mean HU and the scan faces it touches, and flags: an organ "
        "missing although the scan covers its region, a volume outside the published adult range, organs in "
        "an implausible left-right or up-down order. Writes OUT/qc.csv and OUT/qc.png and prints a summary. "
        "Flags are findings: the exit code is 0; a missing or unreadable mask or CT is a row with an error.",
    )
    qc.add_argument("out", type=Path, metavar="OUT", help="folder of masks written by flareseg predict")
    qc.add_argument("--images", type=Path, nargs="+", metavar="DIR_OR_LIST",
                    help="the CTs: folders, .txt lists or files, matched to masks by case name "
                    "(CASE_0000.nii.gz -> CASE); they take precedence over the inputs in OUT/summary.json")
    qc.add_argument("--worst", type=positive_int, default=3, metavar="N",
                    help="worst flagged cases to list in the summary (default 3; qc.png shows up to 3)")
    qc.set_defaults(run=run_qc)


def run_qc(args: argparse.Namespace) -> int:
    from flareseg.qc.figure import write_qc_figure
    from flareseg.qc.inputs import qc_inputs
    from flareseg.qc.report import qc_case, summary_lines, worst_cases, write_qc_csv

    items = qc_inputs(args.out, args.images or ())
    results = [qc_case(item) for item in items]
    csv_path = write_qc_csv(results, args.out / "qc.csv")
    png_path = write_qc_figure(results, worst_cases(results, 3), args.out / "qc.png")
    for line in summary_lines(results, args.worst):
        print(line)
    print(f"wrote {csv_path} and {png_path}")
    return 0
