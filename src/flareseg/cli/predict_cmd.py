"""``flareseg predict`` and ``flareseg export-onnx``."""

from __future__ import annotations

import argparse
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flareseg.inference.predict import PredictOptions


def add_parsers(subparsers) -> None:
    from flareseg.cli.arguments import device, positive_int
    from flareseg.inference.model import BACKENDS

    predict = subparsers.add_parser(
        "predict", help="segment a CT (file or DICOM folder) or a folder of CTs",
        description="Segment the 13 FLARE organs. -i FILE|DICOM_DIR -o MASK writes one mask on the "
        "input's grid; -i DIR -o DIR segments every CT in DIR (CASE_0000.nii.gz -> CASE.nii.gz), keeps "
        "going past a bad scan and exits 1 if any failed.",
    )
    predict.add_argument("-i", "--input", required=True, type=Path, help="CT file, DICOM series folder, or folder of CTs")
    predict.add_argument("-o", "--output", required=True, type=Path, help="mask file (.nii.gz, .nii, .nrrd, .mha) or folder")
    predict.add_argument("-m", "--model", type=Path, help="model directory (default: the bundled model)")
    predict.add_argument("--device", default="cpu", type=device, help="cpu (default), cuda or cuda:N")
    predict.add_argument("--backend", default="auto", choices=BACKENDS,
                         help="network runtime; auto (default): onnxruntime when the device is cpu and the "
                         "model's ONNX files match its weights, else PyTorch; onnx refuses ONNX files that do not")
    predict.add_argument("--threads", type=positive_int, help="CPU threads for the network")
    predict.add_argument("--no-postprocess", action="store_true", help="keep every connected component")
    predict.add_argument("--no-second-chance", action="store_true",
                         help="do not look for organs the coarse stage missed near their anatomical neighbours")
    predict.add_argument("--fine-boundaries", action="store_true",
                         help="draw organ boundaries from interpolated class scores at full resolution (slower)")
    predict.add_argument("--quiet", action="store_true", help="no progress bar and no summary (errors still print)")
    predict.add_argument("--statistics", action="store_true",
                         help="also write per-organ volume (mL), HU mean/std/percentiles, extent (LPS mm) and "
                              "connected components: MASK.json beside one mask, statistics.csv for a folder")
    predict.set_defaults(run=run_predict)

    export = subparsers.add_parser(
        "export-onnx", help="export a model's networks to ONNX for fast CPU prediction",
        description="Write <stage>.onnx beside each <stage>.pt in MODEL_DIR, checked against PyTorch on "
        "random input and on the bundled sample CT, and record in onnx.json the sha256 of the weights each "
        "came from: predict refuses ONNX files whose weights changed since (run this again after retraining).",
    )
    export.add_argument("model_dir", type=Path)
    export.set_defaults(run=run_export)


def run_predict(args: argparse.Namespace) -> int:
    from flareseg.errors import InputError
    from flareseg.inference.predict import PredictOptions

    options = PredictOptions(args.model, args.backend, args.device, args.threads, not args.no_postprocess,
                             not args.no_second_chance, args.fine_boundaries)
    if not args.input.exists():
        raise InputError(f"{args.input}: no such file or folder")
    if args.backend == "onnx" and args.device != "cpu":
        raise InputError(f"--backend onnx runs on the CPU only; use --backend torch with --device {args.device}")
    refuse_overwriting_input(args.input, args.output)
    with one_line_warnings():
        return _predict(args, options)


def _predict(args: argparse.Namespace, options: PredictOptions) -> int:
    import time

    from flareseg.inference.predict import folder_inputs, predict, predict_folder

    if args.input.is_dir() and folder_inputs(args.input):  # else: a DICOM series folder
        report = predict_folder(args.input, args.output, options, progress=not args.quiet)
        for name, error in report.failed.items():
            print(f"failed: {name}: {error}", file=sys.stderr)
        if not args.quiet:
            print(f"{len(report.done)} mask(s) written to {args.output}, {len(report.failed)} failed")
        if args.statistics and report.done:
            path = write_statistics_csv(args.input, args.output, list(report.done))
            if not args.quiet:
                print(f"wrote {path}")
        return 1 if report.failed else 0
    start = time.perf_counter()
    mask = predict(args.input, args.output, options=options)
    if not args.quiet:
        print(f"wrote {args.output} ({mask.geometry.describe()}) in {time.perf_counter() - start:.1f} s")
    if args.statistics:
        path = write_statistics_json(args.input, mask, args.output)
        if not args.quiet:
            print(f"wrote {path}")
    return 0


def write_statistics_json(ct_path: Path, mask, output: Path) -> Path:
    """``organ_statistics`` of one mask as JSON beside it (``MASK.json``), written atomically."""
    import json
    import os

    from flareseg.inference.statistics import organ_statistics
    from flareseg.io import read_ct, strip_image_suffix

    path = output.with_name((strip_image_suffix(output.name) or output.stem) + ".json")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(organ_statistics(read_ct(ct_path), mask), indent=1) + "\n")
    os.replace(tmp, path)
    return path


def write_statistics_csv(input_dir: Path, output_dir: Path, done: list[str]) -> Path:
    """``organ_statistics`` of every mask of a folder run as one CSV (a row per case and organ)."""
    import csv
    import os

    from flareseg.inference.predict import output_name
    from flareseg.inference.statistics import organ_statistics
    from flareseg.io import read_ct, read_volume

    rows = []
    for name in done:
        stats = organ_statistics(read_ct(input_dir / name), read_volume(output_dir / output_name(Path(name))))
        for organ, entry in stats.items():
            flat = {key: value for key, value in entry.items() if key != "bbox_lps_mm"}
            low, high = entry["bbox_lps_mm"]
            flat.update({f"bbox_{end}_{axis}_mm": value for end, corner in (("min", low), ("max", high))
                         for axis, value in zip("lps", corner)})
            rows.append({"case": output_name(Path(name)), "organ": organ, **flat})
    path = output_dir / "statistics.csv"
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(key for row in rows for key in row)) or ["case"])
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def refuse_overwriting_input(input: Path, output: Path) -> None:
    """An output that is the input, or lies inside an input folder (a DICOM series, or a folder of
    CTs whose masks would land among them), is an error: a mask must never replace a scan.

    Raises:
        InputError: Said output.
    """
    from flareseg.errors import InputError

    source, target = input.resolve(), output.resolve()
    if target == source:
        raise InputError(f"{output}: the output is the input; write the mask elsewhere")
    if source.is_dir() and source in target.parents:
        raise InputError(f"{output}: the output lies inside the input folder {input}; write the mask elsewhere")


@contextmanager
def one_line_warnings():
    """Print flareseg's own warnings (an ONNX fallback) as one ``flareseg: warning: ...`` line."""
    from flareseg.inference.model import StaleOnnxWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always", StaleOnnxWarning)
        show = warnings.showwarning

        def show_one_line(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, StaleOnnxWarning):
                print(f"flareseg: warning: {message}", file=sys.stderr)
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = show_one_line
        yield


def run_export(args: argparse.Namespace) -> int:
    from flareseg.inference.export import export_onnx

    for path in export_onnx(args.model_dir):
        print(f"wrote {path}")
    return 0
