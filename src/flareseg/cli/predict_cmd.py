"""``flareseg predict`` and ``flareseg export-onnx``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from flareseg.cli.messages import one_line_warnings

if TYPE_CHECKING:
    from flareseg.inference.options import OutputOptions, PredictOptions


def add_parsers(subparsers) -> None:
    from flareseg.cli.arguments import add_cluster_arguments, device, positive_int
    from flareseg.inference.options import BACKENDS, OUTPUT_TYPES

    predict = subparsers.add_parser(
        "predict", help="segment CTs: files, DICOM folders, folders of CTs or lists of them",
        description="Segment the 13 FLARE organs. -i FILE|DICOM_DIR -o MASK writes one mask on the input's grid. "
        "Several inputs, a folder of CTs, a .txt list (one path per line) or a .csv table (columns input, and "
        "optionally case and acquisition) -o DIR write DIR/CASE.nii.gz per scan "
        "(CASE_0000.nii.gz -> CASE.nii.gz), DIR/manifest.csv (rewritten as each scan ends) and DIR/summary.json; "
        "a bad scan is reported and the run goes on (exit 1 if any failed); masks that already exist are kept "
        "unless --overwrite, and scans that failed before stay failed unless --retry-failed.",
    )
    predict.add_argument("-i", "--input", required=True, type=Path, nargs="+", metavar="INPUT",
                         help="CT file, DICOM series folder, folder of CTs, .txt list or .csv table of them")
    predict.add_argument("-o", "--output", required=True, type=Path,
                         help="mask file (.nii.gz, .nii, .nrrd, .mha; .dcm for DICOM output types) or folder")
    predict.add_argument("-m", "--model", type=Path, help="model directory (default: the bundled model)")
    predict.add_argument("--output-type", default="nifti", choices=OUTPUT_TYPES,
                         help="nifti (default): a label map image; dicom_seg: a DICOM Segmentation and rtstruct: "
                         "an RT Structure Set, both referencing the input DICOM series")
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
    predict.add_argument("--statistics", action="store_true",
                         help="also write per-organ volume (mL), HU mean/std/percentiles, extent (LPS mm) and "
                              "connected components: MASK.json beside one mask, statistics.csv for several")
    predict.add_argument("--preview", action="store_true",
                         help="also write MASK.png: axial, coronal and sagittal views with the organs overlaid")
    predict.add_argument("--overwrite", action="store_true", help="redo scans whose mask already exists")
    predict.add_argument("--retry-failed", action="store_true",
                         help="redo the scans that OUT/manifest.csv lists as failed (a re-run keeps them failed)")
    add_cluster_arguments(predict, "several scans: predict", "model")
    predict.add_argument("--acquisition", type=positive_int, metavar="N",
                         help="which acquisition of a DICOM series that holds several at the same positions")
    predict.add_argument("--force", action="store_true",
                         help="segment a scan although its intensities do not look like CT")
    predict.add_argument("--quiet", action="store_true", help="no progress bar and no summary (errors still print)")
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
    from flareseg.cli.allocator import keep_freed_memory
    from flareseg.cli.paths import refuse_overwriting_input
    from flareseg.errors import InputError
    from flareseg.inference.cases import Case, case_name, collect_cases, is_single_scan
    from flareseg.inference.options import OutputOptions, PredictOptions
    from flareseg.inference.outputs import check_mask_path

    keep_freed_memory()
    options = PredictOptions(args.model, args.backend, args.device, args.threads, not args.no_postprocess,
                             not args.no_second_chance, args.fine_boundaries, args.force)
    outputs = OutputOptions(args.output_type, args.statistics, args.preview, args.overwrite)
    if args.backend == "onnx" and args.device != "cpu":
        raise InputError(f"--backend onnx runs on the CPU only; use --backend torch with --device {args.device}")
    for path in args.input:
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
    single = len(args.input) == 1 and is_single_scan(args.input[0]) and not args.output.is_dir()
    if args.acquisition and not (single and args.input[0].is_dir()):
        raise InputError("--acquisition chooses within one DICOM series: give one DICOM folder as input")
    with one_line_warnings():
        if single:
            check_mask_path(args.output, args.output_type, args.input[0])
            cases = [Case(case_name(args.input[0]), args.input[0], args.acquisition)]
        else:
            cases = collect_cases(args.input)
        refuse_overwriting_input([case.input for case in cases] + list(args.input), args.output)
        if single:
            return _predict_one(cases[0], args, options, outputs)
        return _predict_many(cases, args, options, outputs)


def _predict_one(case, args: argparse.Namespace, options: PredictOptions, outputs: OutputOptions) -> int:
    import time
    from concurrent.futures import ThreadPoolExecutor

    from flareseg.inference.outputs import check_outputs, side_path
    from flareseg.io import read_ct

    start = time.perf_counter()
    check_outputs(case.input, args.output, outputs, case.acquisition)
    with ThreadPoolExecutor(1, thread_name_prefix="flareseg-read") as pool:
        # the scan is read while prediction's other modules import and the model loads (about 0.1 s)
        reading = pool.submit(read_ct, case.input, case.acquisition, options.force)
        from flareseg.inference.predict import predict_case

        predict_case(case, args.output, None, options, outputs, reading=reading)
    if not args.quiet:
        extras = [side_path(args.output, suffix) for flag, suffix in ((args.statistics, ".json"), (args.preview, ".png"))
                  if flag]
        also = f"; also {', '.join(map(str, extras))}" if extras else ""
        print(f"wrote {args.output} ({args.output_type}) in {time.perf_counter() - start:.1f} s{also}")
    return 0


def _predict_many(cases, args: argparse.Namespace, options: PredictOptions, outputs: OutputOptions) -> int:
    import json

    from flareseg.inference.manifest import MANIFEST_NAME, ManifestWriter, previous_failures
    from flareseg.inference.predict import RunReport, plan_cases
    from flareseg.io.atomic import atomic_write_text

    manifest = args.output / MANIFEST_NAME
    failed_before = {} if args.retry_failed else previous_failures(manifest)
    report, pending = RunReport(), []
    writer = ManifestWriter(manifest, report.results)
    try:
        pending = plan_cases(cases, args.output, outputs, report, failed_before)
        _keep_recorded_components(report.results, args.output / "summary.json")
        writer.write(force=True)
        _run_pending(pending, args, options, outputs, lambda _: writer.write())
    finally:
        if report.results:
            atomic_write_text(args.output / "summary.json", json.dumps(report.summary(), indent=1) + "\n")
            writer.write(force=True)
    for result in report.failed:
        print(f"failed: {Path(result.input).name}: {result.error}", file=sys.stderr)
    if args.statistics:
        path = write_statistics_csv(report, args.output, outputs)
        if not args.quiet and path:
            print(f"wrote {path}")
    ran = {id(result) for _, result in pending}
    kept = sum(id(result) not in ran and (result.case, result.input) in failed_before for result in report.failed)
    failed = f"{report.count('failed')} failed" + (f" ({kept} in an earlier run: --retry-failed redoes them)"
                                                   if kept else "")
    if not args.quiet:
        print(f"{report.count('done')} mask(s) written to {args.output}, {report.count('skipped')} already there, "
              f"{failed}; manifest in {manifest}, summary in {args.output / 'summary.json'}")
    return 1 if report.failed else 0


def _keep_recorded_components(results, summary: Path) -> None:
    """A mask kept from an earlier run keeps the components before post-processing that run
    recorded in ``summary.json`` for the same case and input."""
    import json

    try:
        earlier = {(entry["case"], entry["input"]): entry.get("components_before_postprocessing")
                   for entry in json.loads(summary.read_text(encoding="utf-8"))["cases"]}
    except (OSError, ValueError, KeyError, TypeError):
        return
    for result in results:
        if result.status == "skipped" and isinstance(earlier.get((result.case, result.input)), dict):
            result.components_before_postprocessing = earlier[(result.case, result.input)]


def _run_pending(pending, args: argparse.Namespace, options: PredictOptions, outputs: OutputOptions,
                 on_result) -> None:
    """Predict the pending cases here, or on Dask with --scheduler, or --workers N > 1 for two or more."""
    if args.scheduler or (args.workers > 1 and len(pending) > 1):
        from flareseg.inference.cohort import ClusterOptions, predict_cohort

        predict_cohort(pending, options, outputs, ClusterOptions(args.workers, args.scheduler), on_result,
                       progress=not args.quiet)
    else:
        from flareseg.inference.predict import run_cases

        run_cases(pending, options, outputs, progress=not args.quiet, on_result=on_result)


def write_statistics_csv(report, output_dir: Path, outputs: OutputOptions) -> Path | None:
    """``organ_statistics`` of every mask of a run as one CSV (a row per case and organ); masks kept from
    an earlier run are read back (NIfTI only)."""
    import csv
    import io

    from flareseg.errors import FlaresegError
    from flareseg.inference.statistics import organ_statistics
    from flareseg.io import read_ct, read_volume
    from flareseg.io.atomic import atomic_write_text

    rows = []
    for result in report.results:
        stats = result.statistics
        if stats is None and result.status == "skipped" and outputs.output_type == "nifti":
            try:
                stats = organ_statistics(read_ct(result.input, result.acquisition, force=True),
                                         read_volume(result.output))
            except FlaresegError as error:
                print(f"flareseg: warning: no statistics for {result.case}: {error}", file=sys.stderr)
        for organ, entry in (stats or {}).items():
            flat = {key: value for key, value in entry.items() if key != "bbox_lps_mm"}
            low, high = entry["bbox_lps_mm"]
            flat.update({f"bbox_{end}_{axis}_mm": value for end, corner in (("min", low), ("max", high))
                         for axis, value in zip("lps", corner)})
            rows.append({"case": result.case, "organ": organ, **flat})
    if not rows:
        return None
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(key for row in rows for key in row)))
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(output_dir / "statistics.csv", text.getvalue())


def run_export(args: argparse.Namespace) -> int:
    from flareseg.inference.export import export_onnx

    for path in export_onnx(args.model_dir):
        print(f"wrote {path}")
    return 0
