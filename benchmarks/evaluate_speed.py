"""Seconds per case of ``flareseg evaluate`` against the official FLARE loop (DeepMind surface-distance).

The case is a real pair of 14-class masks at CT resolution: the two TotalSegmentator
label maps of the shared sample CT (v1 normal as reference, v2 fast as prediction),
resampled (nearest neighbour) onto a 512x512x129 grid of the same field of view.

    python benchmarks/evaluate_speed.py [DATA_DIR]

DATA_DIR defaults to ../shared/data beside the repository. Needs the test extras.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "evaluation"))
from reference import official_case  # noqa: E402

from flareseg.evaluation.evaluate import score_case  # noqa: E402
from flareseg.evaluation.rules import rules_for  # noqa: E402
from flareseg.io import Geometry, Volume  # noqa: E402

SHAPE_XYZ = (512, 512, 129)


def upsampled(path: Path) -> Volume:
    image = sitk.ReadImage(str(path))
    size = np.array(image.GetSize()) * np.array(image.GetSpacing())
    spacing = tuple(float(s) for s in size / np.array(SHAPE_XYZ))
    resampled = sitk.Resample(image, SHAPE_XYZ, sitk.Transform(), sitk.sitkNearestNeighbor,
                              image.GetOrigin(), spacing, image.GetDirection(), 0, sitk.sitkUInt8)
    array = sitk.GetArrayFromImage(resampled)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    return Volume(array, Geometry(array.shape, spacing, image.GetOrigin(), tuple(map(tuple, direction))))


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data"
    ts = data / "ts_example"
    gt = upsampled(ts / "flare_labels_fullct_from_v1normal.nii.gz")
    pred = upsampled(ts / "flare_labels_fullct_from_v2fast.nii.gz")
    rules = rules_for("flare22")
    print(f"case: {'x'.join(map(str, SHAPE_XYZ))} voxels, spacing {tuple(round(s, 3) for s in gt.geometry.spacing_xyz_mm)} mm,"
          f" {len(rules.class_ids)} classes, {os.cpu_count()} cores")
    score_case(gt, pred, "warm-up", rules, threads=1)  # imports and lookup tables

    timings = {}
    for threads in (1, os.cpu_count() or 1):
        start = time.perf_counter()
        ours = score_case(gt, pred, "case", rules, threads=threads)
        timings[f"flareseg, {threads} thread(s)"] = time.perf_counter() - start

    start = time.perf_counter()
    gt_xyz, pred_xyz = gt.array.T, pred.array.T
    reference = official_case(gt_xyz, pred_xyz, gt.geometry.spacing_xyz_mm, rules.name)
    baseline = time.perf_counter() - start
    worst = max(max(abs(s.dsc - reference[s.class_id][0]), abs(s.nsd - reference[s.class_id][1])) for s in ours)

    print(f"{'official FLARE loop (surface-distance)':<40} {baseline:7.2f} s/case   1.00x")
    for name, seconds in timings.items():
        print(f"{name:<40} {seconds:7.2f} s/case   {baseline / seconds:.2f}x faster")
    print(f"largest difference from the reference over all DSC/NSD values: {worst:.1e}")


if __name__ == "__main__":
    main()
