"""Whole-process seconds and peak memory of ``flareseg predict`` against baselines measured in
the same run, on real scans:

- ``floor``: a Python process that only reads the CT and writes a mask of its size;
- ``sliding window``: MONAI ``sliding_window_inference`` of the same network (the model's first
  fine stage) over the whole scan at that stage's resolution (benchmarks/sliding_window_baseline.py);
- ``flareseg onnx`` / ``flareseg torch``: the full cascade (read, preprocess, every stage,
  post-process, write) with each network runtime.

    python benchmarks/predict_speed.py [DATA_DIR] [--scan CT ...] [--model MODEL_DIR] [--repeat N]

DATA_DIR defaults to ../shared/data beside the repository (its scans: a 3 mm sample, 512x512
DICOM series of 20 and 79 slices, 512x512 NIfTIs of 109 and 115 slices); ``--scan`` measures
the given CT files or DICOM folders instead. MODEL_DIR defaults to the bundled model. Each
command runs in a fresh process (imports and model loading included; its time runs to its exit,
its memory is sampled every 0.1 s); flareseg's time and memory are printed as ratios to the
floor and to the sliding window measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from flareseg.data import default_model_dir
from flareseg.evaluation.efficiency import measure_command
from flareseg.inference.model import onnx_path, read_recipe

HERE = Path(__file__).resolve().parent
FLOOR = ("import os, sys, SimpleITK as s; p = sys.argv[1]; "
         "i = s.ReadImage(s.ImageSeriesReader.GetGDCMSeriesFileNames(p) if os.path.isdir(p) else p); "
         "m = s.Cast(i * 0, s.sitkUInt8); s.WriteImage(m, sys.argv[2], True)")


def scans(data: Path) -> dict[str, Path]:
    return {
        "3 mm sample (122x101x112 NIfTI)": data / "ts_example" / "example_ct.nii.gz",
        "512x512x20 DICOM": data / "ts_example" / "example_ct_dicom",
        "512x512x79 DICOM": data / "tcia_pancreatic_ct_cbct_seg_cb001" / "dicom_ct",
        "512x512x109 NIfTI": data / "tcia_hcc_tace_seg_hcc006" / "ct.nii.gz",
        "512x512x115 NIfTI": data / "tcia_hcc_tace_seg_multiphase" / "hcc007_latevenous_abdomen" / "ct.nii.gz",
    }


def fine_spacing_mm(model_dir: Path, ct: Path) -> float:
    """Voxel size (mm, isotropic: geometric mean over axes) at which the model's first fine stage
    sees this scan: its ``spacing_mm``, or its crop box from the coarse stage divided by its input size."""
    import numpy as np

    from flareseg.inference.cascade import crop_boxes, run_stage
    from flareseg.inference.model import load_model
    from flareseg.io import read_ct
    from flareseg.preprocessing.orientation import to_canonical

    model = load_model(model_dir)
    first, fine = model.recipe.stages[0], model.recipe.stages[1]
    if fine.spacing_mm:
        return float(np.prod(fine.spacing_mm) ** (1 / 3))
    canonical, _ = to_canonical(read_ct(ct))
    hu, spacing = canonical.array, canonical.geometry.spacing_zyx_mm
    boxes = crop_boxes(run_stage(model, first, hu, spacing), fine, hu.shape, spacing)
    shape = boxes[0][1].shape if boxes else hu.shape
    return float(np.prod([n * s / m for n, s, m in zip(shape, spacing, fine.size_zyx)]) ** (1 / 3))


def commands(model_dir: Path, ct: Path, out: Path, sliding_window: bool = True) -> dict[str, list[str]]:
    flareseg = [sys.executable, "-m", "flareseg.cli.main", "predict", "-i", str(ct), "-m", str(model_dir)]
    stage = read_recipe(model_dir).stages[1].name
    runs = {"floor (read + write)": [sys.executable, "-c", FLOOR, str(ct), str(out / "floor.nii.gz")]}
    if sliding_window:
        runs["sliding window (MONAI)"] = [sys.executable, str(HERE / "sliding_window_baseline.py"), str(model_dir),
                                          stage, f"{fine_spacing_mm(model_dir, ct):.3f}", str(ct), str(out / "sw.nii.gz")]
    runs["flareseg torch"] = flareseg + ["-o", str(out / "torch.nii.gz"), "--backend", "torch"]
    if all(onnx_path(model_dir, s.name).is_file() for s in read_recipe(model_dir).stages):
        runs["flareseg onnx"] = flareseg + ["-o", str(out / "onnx.nii.gz"), "--backend", "onnx"]
    return runs


def ratios(result: dict, floor: dict | None, baseline: dict | None) -> str:
    """``2.9x the floor's time, 1.8x its memory; 4.1x faster, 2.0x less memory than sliding window``."""
    parts = []
    if floor:
        parts.append(f"{result['time_s'] / floor['time_s']:4.1f}x the floor's time, "
                     f"{result['peak_ram_mb'] / floor['peak_ram_mb']:3.1f}x its memory")
    if baseline:
        parts.append(f"{baseline['time_s'] / result['time_s']:4.1f}x faster, "
                     f"{baseline['peak_ram_mb'] / result['peak_ram_mb']:3.1f}x less memory than sliding window")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=HERE.parents[1] / "shared" / "data")
    parser.add_argument("--scan", type=Path, action="append", help="a CT file or DICOM folder (repeatable)")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=1, help="runs per command; the fastest is kept")
    parser.add_argument("--no-sliding-window", action="store_true", help="skip the MONAI sliding-window baseline")
    args = parser.parse_args()
    model_dir = args.model or default_model_dir()
    print(f"model {model_dir.name}, {os.cpu_count()} cores; whole process per scan (imports and model loading included)")
    out = Path(tempfile.mkdtemp(prefix="flareseg-bench-"))
    chosen = {str(path): path for path in args.scan} if args.scan else scans(args.data)
    try:
        for name, ct in chosen.items():
            results = {}
            for label, argv in commands(model_dir, ct, out, not args.no_sliding_window).items():
                runs = [measure_command(argv, timeout_s=600).summary() for _ in range(args.repeat)]
                if any(r["returncode"] != 0 for r in runs):
                    print(f"  {label}: failed (exit {runs[0]['returncode']})")
                    continue
                results[label] = min(runs, key=lambda r: r["time_s"])
            print(f"\n{name}")
            floor, baseline = results.get("floor (read + write)"), results.get("sliding window (MONAI)")
            for label, r in results.items():
                shown = ratios(r, floor, baseline) if label.startswith("flareseg") else ""
                print(f"  {label:<24} {r['time_s']:6.2f} s  {r['peak_ram_mb']:7.0f} MB  {shown}")
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
