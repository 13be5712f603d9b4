"""Entry point of the ``flareseg`` command: builds the parser and turns errors into one line."""

from __future__ import annotations

import argparse
import sys

from flareseg.cli import (
    benchmark_cmd,
    dataset_cmd,
    demo_cmd,
    evaluate_cmd,
    image_cmd,
    predict_cmd,
    pseudolabel_cmd,
    qc_cmd,
    train_cmd,
)
from flareseg.cli.messages import one_line_warnings
from flareseg.errors import FlaresegError

COMMAND_MODULES = (image_cmd, dataset_cmd, train_cmd, pseudolabel_cmd, predict_cmd, evaluate_cmd, benchmark_cmd, demo_cmd,
                   qc_cmd)


class VersionAction(argparse.Action):
    """``--version``: prints the version, read only when asked for (see ``flareseg.__version__``)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="show flareseg's version and exit"):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from flareseg import __version__

        print(f"flareseg {__version__}")  # on stdout, as argparse's own version action prints
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flareseg",
        description="Fast, low-resource segmentation of the 13 FLARE abdominal organs in CT "
        "(the bundled model segments no lesions; the FLARE lesion class 14 is supported in training and evaluation).",
    )
    parser.add_argument("--version", action=VersionAction)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.add_parsers(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the process exit code (0 success, 1 failure, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # a command may run itself again (train --nproc)
    try:
        with one_line_warnings():
            return int(args.run(args) or 0)
    except FlaresegError as error:
        print(f"flareseg: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("flareseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
