"""Output paths of the commands: never onto an input."""

from __future__ import annotations

from pathlib import Path

from flareseg.errors import InputError


def refuse_overwriting_input(inputs: list[Path], output: Path) -> None:
    """An output that is an input, or lies inside an input folder (a DICOM series, or a folder of
    CTs whose masks would land among them), is an error: an output must never replace a scan.

    Raises:
        InputError: Said output.
    """
    target = output.resolve()
    for input in inputs:
        source = input.resolve()
        if target == source:
            raise InputError(f"{output}: the output is the input {input}; write it elsewhere")
        if source.is_dir() and source in target.parents:
            raise InputError(f"{output}: the output lies inside the input folder {input}; write it elsewhere")

