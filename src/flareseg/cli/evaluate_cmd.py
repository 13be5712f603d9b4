"""``flareseg evaluate``: FLARE DSC/NSD of predicted label maps against ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(subparsers) -> None:
    from flareseg.cli.arguments import positive_int
    from flareseg.evaluation.rules import DEFAULT_RULES, RULES

    evaluate = subparsers.add_parser(
        "evaluate", help="score predictions with the FLARE metrics (DSC, NSD)",
        description="Score every label map in --gt against the same-named file in --pred exactly as an official "
        "FLARE evaluation script at a stated revision does (JunMa11/FLARE on GitHub). Writes scores.csv and "
        "summary.json and prints a table; each names the rules and the script revision it follows.",
        epilog="rules (official script @ commit):\n" + "\n".join(
            f"  {name:<15} {rules.script} @ {rules.revision} ({rules.revision_date})" for name, rules in RULES.items()
        ) + "\nflare22-2022, flare23-2023: the revisions used while those challenges ran; flare22, flare23: "
        "today's scripts (NSD = 0 below DSC 0.2).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("--pred", required=True, type=Path, help="folder of predicted label maps")
    evaluate.add_argument("--gt", required=True, type=Path, help="folder of ground-truth label maps")
    evaluate.add_argument("--dataset", type=Path,
                          help="dataset folder whose dataset.json names the ground truth's label values and "
                          "declares per-case annotated classes")
    evaluate.add_argument("--rules", choices=tuple(RULES), default=DEFAULT_RULES,
                          help=f"official script and revision to reproduce (default {DEFAULT_RULES}; see below)")
    evaluate.add_argument("--lesion-class", type=int, metavar="ID",
                          help="flare24-lesion only: the prediction value taken as the lesion (14 in flareseg's "
                          "own label maps); without it files are scored as the script scores them (1 = lesion)")
    evaluate.add_argument("--out", type=Path, help="folder for scores.csv and summary.json (default: --pred)")
    evaluate.add_argument("--format", choices=("text", "markdown"), default="text", help="printed table format")
    evaluate.add_argument("--threads", type=positive_int, default=None, help="classes scored in parallel (default: all cores)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from flareseg.errors import InputError
    from flareseg.io.atomic import output_folder
    from flareseg.evaluation.evaluate import evaluate_folders
    from flareseg.evaluation.report import format_table, summarise, write_case_csv, write_summary_json
    from flareseg.evaluation.rules import rules_for

    rules = rules_for(args.rules, args.lesion_class)
    out = args.out or args.pred
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; --out names the folder for scores.csv and summary.json")
    scores = evaluate_folders(args.pred, args.gt, rules, args.dataset, args.threads, not args.quiet)
    summary = summarise(scores, rules)
    output_folder(out)
    write_case_csv(scores, out / "scores.csv", rules)
    write_summary_json(summary, out / "summary.json")
    print(format_table(summary, markdown=args.format == "markdown"))
    print(f"\n{summary['cases']} case(s); per-case scores in {out / 'scores.csv'}, summary in {out / 'summary.json'}")
    return 0
