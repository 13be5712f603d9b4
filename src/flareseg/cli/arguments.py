"""Argument types for the command line: values are checked when they are parsed, so a bad one is a
usage error naming the option, never a traceback later."""

from __future__ import annotations

import argparse
import re


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def positive_float(text: str) -> float:
    """A finite number > 0."""
    if not 0 < _number(text) < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return float(text)


def fraction(text: str) -> float:
    """A number in [0, 1)."""
    if not 0 <= _number(text) < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return float(text)


def device(text: str) -> str:
    """``cpu``, ``auto``, ``cuda`` or ``cuda:N``; a CUDA device must exist."""
    if text in ("cpu", "auto"):
        return text
    if not re.fullmatch(r"cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N or auto, got {text!r}")
    import torch

    if not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text}: no CUDA device is available (torch {torch.__version__})")
    index = int(text.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text}: there are {torch.cuda.device_count()} CUDA device(s)")
    return text


def add_cluster_arguments(parser: argparse.ArgumentParser, what: str, model: str) -> None:
    """``--workers N`` and ``--scheduler ADDRESS``: where ``what`` runs on Dask (a local cluster of N
    worker processes, each loading ``model`` once, or a running cluster); N = 1 runs in this process."""
    import os

    parser.add_argument("--workers", type=positive_int, default=1, metavar="N",
                        help=f"{what} on a local Dask cluster of N worker processes, each loading the {model} once "
                        "and taking cores/N threads and memory/N (default 1: in this process)")
    parser.add_argument("--scheduler", metavar="ADDRESS", default=os.environ.get("DASK_SCHEDULER_ADDRESS") or None,
                        help=f"{what} on the running Dask cluster of this scheduler (tcp://host:8786; "
                        "default: $DASK_SCHEDULER_ADDRESS); --workers is then ignored")
