"""Entry point of the ``flareseg`` command: builds the parser and turns errors into one line."""

from __future__ import annotations

import argparse
import importlib
import sys

from flareseg.cli.messages import one_line_warnings
from flareseg.errors import FlaresegError

#: Each command, in the order ``--help`` lists them, and the module of ``flareseg.cli`` that
#: declares it; only the module of the command that runs is imported.
COMMANDS = {
    "info": "image_cmd", "convert": "image_cmd", "dataset": "dataset_cmd", "train": "train_cmd",
    "pseudolabel": "pseudolabel_cmd", "predict": "predict_cmd", "export-onnx": "predict_cmd",
    "evaluate": "evaluate_cmd", "benchmark": "benchmark_cmd", "demo": "demo_cmd", "qc": "qc_cmd",
}


class VersionAction(argparse.Action):
    """``--version``: prints the version, read only when asked for (see ``flareseg.__version__``)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="show flareseg's version and exit"):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from flareseg import __version__

        print(f"flareseg {__version__}")  # on stdout, as argparse's own version action prints
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``flareseg`` parser: with every command, or with ``command``'s alone when it is one."""
    parser = argparse.ArgumentParser(
        prog="flareseg",
        description="Fast, low-resource segmentation of the 13 FLARE abdominal organs in CT "
        "(the bundled model segments no lesions; the FLARE lesion class 14 is supported in training and evaluation).",
    )
    parser.add_argument("--version", action=VersionAction)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = [COMMANDS[command]] if command in COMMANDS else dict.fromkeys(COMMANDS.values())
    for module in modules:
        importlib.import_module(f"flareseg.cli.{module}").add_parsers(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the process exit code (0 success, 1 failure, 2 usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    args.argv = argv  # a command may run itself again (train --nproc)
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
