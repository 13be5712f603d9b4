"""``flareseg evaluate``: FLARE DSC/NSD of predicted label maps against ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(subparsers) -> None:
    from flareseg.evaluation.rules import RULE_NAMES

    evaluate = subparsers.add_parser(
        "evaluate", help="score predictions with the FLARE metrics (DSC, NSD)",
        description="Score every label map in --gt against the same-named file in --pred with the FLARE rules "
        "(both empty -> 1, one empty -> 0, aorta/IVC/oesophagus on the ground truth's z-range, NSD = 0 "
        "below a DSC threshold). Writes scores.csv and summary.json and prints a table.",
    )
    evaluate.add_argument("--pred", required=True, type=Path, help="folder of predicted label maps")
    evaluate.add_argument("--gt", required=True, type=Path, help="folder of ground-truth label maps")
    evaluate.add_argument("--dataset", type=Path,
                          help="dataset folder whose dataset.json declares per-case annotated classes")
    evaluate.add_argument("--rules", choices=RULE_NAMES, default="flare22",
                          help="challenge rules (default flare22: NSD=0 below DSC 0.2; flare23/24: 0.1; "
                          "flare21: liver, kidney, spleen, pancreas at 1 mm)")
    evaluate.add_argument("--out", type=Path, help="folder for scores.csv and summary.json (default: --pred)")
    evaluate.add_argument("--format", choices=("text", "markdown"), default="text", help="printed table format")
    evaluate.add_argument("--threads", type=int, default=None, help="classes scored in parallel (default: all cores)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from flareseg.evaluation.evaluate import evaluate_folders
    from flareseg.evaluation.report import format_table, summarise, write_case_csv, write_summary_json
    from flareseg.evaluation.rules import rules_for

    scores = evaluate_folders(args.pred, args.gt, rules_for(args.rules), args.dataset, args.threads, not args.quiet)
    summary = summarise(scores)
    out = args.out or args.pred
    out.mkdir(parents=True, exist_ok=True)
    write_case_csv(scores, out / "scores.csv")
    write_summary_json(summary, out / "summary.json")
    print(format_table(summary, markdown=args.format == "markdown"))
    print(f"\n{summary['cases']} case(s); per-case scores in {out / 'scores.csv'}, summary in {out / 'summary.json'}")
    return 0
