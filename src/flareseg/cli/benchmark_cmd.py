"""``flareseg benchmark``: time and memory of any prediction command, per case, as FLARE measures them."""

from __future__ import annotations

import argparse
from pathlib import Path

from flareseg.errors import InputError


def add_parsers(subparsers) -> None:
    benchmark = subparsers.add_parser(
        "benchmark", help="measure time, RAM, CPU and GPU memory of a prediction command",
        description="Run COMMAND once per case (or once without --inputs), sampling every --interval seconds "
        "the resident memory and CPU use of its process tree and the GPU memory (NVML). In COMMAND, {input} "
        "is replaced by the case's input path and {output} by OUT/predictions/<case>.nii.gz. Writes "
        "efficiency.csv, efficiency.json and plots/<case>.png under --out.",
        epilog="example: flareseg benchmark --inputs scans/ --out bench/ -- flareseg predict -i {input} -o {output}",
    )
    benchmark.add_argument("--out", required=True, type=Path, help="output folder")
    benchmark.add_argument("--inputs", type=Path, help="folder of CT files or DICOM folders, one case each")
    benchmark.add_argument("--interval", type=float, default=0.1, help="sampling interval in seconds (default 0.1)")
    benchmark.add_argument("--timeout", type=float, default=None, help="kill a case after this many seconds")
    benchmark.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to measure")
    benchmark.set_defaults(run=run_benchmark)


def run_benchmark(args: argparse.Namespace) -> int:
    from flareseg.evaluation.efficiency import measure_command
    from flareseg.evaluation.efficiency_report import format_figures, write_efficiency

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise InputError("no command to measure (give it after --)")
    traces = {}
    for case, source in _cases(args.inputs):
        output = args.out / "predictions" / f"{case}.nii.gz"
        output.parent.mkdir(parents=True, exist_ok=True)
        argv = [part.replace("{input}", str(source)).replace("{output}", str(output)) for part in command]
        traces[case] = measure_command(argv, args.interval, args.timeout)
    figures = write_efficiency(traces, args.out)
    print(format_figures(figures))
    failed = [case for case, row in figures.items() if row["returncode"] != 0]
    if failed:
        print(f"{len(failed)} case(s) exited non-zero: {', '.join(failed)}")
    return 1 if failed else 0


def _cases(inputs: Path | None) -> list[tuple[str, Path | str]]:
    if inputs is None:
        return [("run", "")]
    from flareseg.io import has_image_suffix, strip_image_suffix

    if not inputs.is_dir():
        raise InputError(f"{inputs}: no such folder")
    cases = []
    for path in sorted(inputs.iterdir()):
        if path.is_dir():
            cases.append((path.name, path))
        elif has_image_suffix(path):
            cases.append((strip_image_suffix(path.name), path))
    if not cases:
        raise InputError(f"{inputs}: no CT files or DICOM folders")
    return cases
