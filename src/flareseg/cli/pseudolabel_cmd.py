"""``flareseg pseudolabel``: pseudo-labels of a dataset's unlabelled and partially labelled cases, and
the selection of the stable ones across rounds."""

from __future__ import annotations

import argparse
from pathlib import Path

from flareseg.cli.arguments import add_cluster_arguments, device, positive_int


def share(text: str) -> float:
    """A number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def nats(text: str) -> float:
    """A non-negative entropy in nats."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return value


def add_parsers(subparsers) -> None:
    parser = subparsers.add_parser(
        "pseudolabel", help="pseudo-label a dataset's unlabelled cases with a model, round by round",
        description="With -m TEACHER: predict every unlabelled case, and the classes partially labelled "
        "cases do not annotate (their own labels win), into DATASET/pseudoLabelsTr/roundN/ with "
        "provenance.json (with, per case and class, the teacher's mean softmax entropy: flareseg's "
        "extension); an interrupted round resumes. With --select: rank the cases by how much their "
        "pseudo-label changed between consecutive rounds (the FLARE22 winner's rule) and keep the most "
        "stable share, writing pseudoLabelsTr/selection.json and selection.csv.",
    )
    parser.add_argument("--dataset", required=True, type=Path, help="dataset folder (nnU-Net layout)")
    parser.add_argument("-m", "--model", type=Path, help="teacher model directory")
    parser.add_argument("--round", type=positive_int, metavar="N",
                        help="round number (default: continue the teacher's round, else the next one)")
    parser.add_argument("--overwrite", action="store_true", help="replace a round another teacher wrote")
    parser.add_argument("--select", action="store_true", help="select stable pseudo-labels across the rounds")
    parser.add_argument("--keep", type=share, default=0.962,
                        help="share of cases kept by --select (default 0.962: the FLARE22 winner's 1924 of 2000)")
    parser.add_argument("--class-threshold", type=float, metavar="X",
                        help="flareseg's extension: also drop a kept case's class whose own instability exceeds X")
    parser.add_argument("--max-entropy", type=nats, metavar="X",
                        help="flareseg's extension: also drop a kept case's class whose mean softmax entropy "
                        "(nats, as the last round recorded it) exceeds X; cases of rounds that recorded none "
                        "are never dropped for it")
    parser.add_argument("--device", default="cpu", type=device, help="cpu (default), cuda or cuda:N")
    parser.add_argument("--threads", type=positive_int,
                        help="CPU threads for the network (per worker on Dask; default with --workers N: the cores // N)")
    add_cluster_arguments(parser, "predict the cases", "teacher")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary (errors still print)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from flareseg.errors import InputError

    if args.select == bool(args.model):
        raise InputError("give -m TEACHER to pseudo-label, or --select to choose among the rounds, not both")
    return _select(args) if args.select else _pseudolabel(args)


def _pseudolabel(args: argparse.Namespace) -> int:
    import sys

    from flareseg.cli.messages import one_line_warnings
    from flareseg.training.pseudo_rounds import RoundOptions, pseudolabel_round

    options = RoundOptions(not args.quiet, args.device, args.threads, args.workers, args.scheduler)
    with one_line_warnings():
        report = pseudolabel_round(args.dataset, args.model, args.round, args.overwrite, options=options)
    for case, error in report.failed.items():
        print(f"failed: {case}: {error}", file=sys.stderr)
    if not args.quiet:
        print(f"round {report.number}: {len(report.done)} case(s) pseudo-labelled, {len(report.kept)} already there, "
              f"{len(report.failed)} failed, in {report.folder}")
    return 1 if report.failed else 0


def _select(args: argparse.Namespace) -> int:
    from flareseg.training.pseudo_rounds import rounds_present
    from flareseg.training.pseudo_selection import select_rounds

    selection, scores, path = select_rounds(args.dataset, rounds_present(args.dataset), args.keep,
                                            args.class_threshold, args.max_entropy)
    if not args.quiet:
        print(f"kept {len(selection.kept)} of {len(scores)} case(s); dropped (least stable first): "
              f"{', '.join(reversed(selection.dropped)) or 'none'}")
        for case, classes in selection.dropped_classes.items():
            reasons = [f"{name} {', '.join(map(str, found[case]))}" for name, found in
                       (("unstable", selection.instability_dropped), ("uncertain", selection.entropy_dropped))
                       if case in found]
            print(f"  {case}: classes {', '.join(map(str, classes))} dropped ({'; '.join(reasons)})")
        print(f"wrote {path} and {path.with_suffix('.csv')}")
    return 0
