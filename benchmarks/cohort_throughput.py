"""Throughput of cohort prediction: the in-process loop against Dask with 1 and N local workers,
measured in one run on the same cohort of real scans.

    python benchmarks/cohort_throughput.py [DATA_DIR] [--model MODEL_DIR] [--cases 12] [--workers 2]

DATA_DIR defaults to ../shared/data beside the repository. The cohort is its NIfTI CTs (a 3 mm
sample; 512x512 scans of 20, 79 and 109 slices) repeated to ``--cases`` symlinks in a temporary
folder. Modes: the in-process loop with the network runtime's default threads (``flareseg predict``
without ``--threads``), the same loop with as many threads as CPUs (what a 1-worker cluster gives
its worker), Dask with 1 worker and Dask with ``--workers``. Each mode predicts the whole cohort
into a fresh folder (model loading and, for Dask, cluster start included) and prints:

- scans per hour (wall clock, whole cohort);
- peak memory (MB): the largest peak resident memory of a worker process while it ran one case
  (``peak_memory_mb`` of the manifest; for the loop, this process);
- overhead per case (s): (wall - sum of the cases' own seconds / workers) / cases: model loading,
  cluster start, scheduling and result collection spread over the cases. Dask's cost per case is
  its overhead minus the loop's.

The load average is printed before and after each mode: on a shared machine, compare modes only
when it stayed near the same value.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

from flareseg.inference.cases import collect_cases
from flareseg.inference.cohort import ClusterOptions, local_cluster, local_shape, predict_cohort
from flareseg.inference.outputs import OutputOptions
from flareseg.inference.predict import PredictOptions, RunReport, plan_cases, run_cases

HERE = Path(__file__).resolve().parent
SCANS = ("ts_example/example_ct.nii.gz", "ts_example/example_ct_dicom.nii.gz",
         "tcia_pancreatic_ct_cbct_seg_cb001/ct.nii.gz", "tcia_hcc_tace_seg_hcc006/ct.nii.gz")


def make_cohort(data: Path, folder: Path, cases: int) -> Path:
    """``cases`` symlinks ``caseNN_0000.nii.gz`` in ``folder``, to the scans of :data:`SCANS` in turn."""
    folder.mkdir(parents=True)
    scans = [data / name for name in SCANS if (data / name).is_file()]
    if not scans:
        raise SystemExit(f"{data}: none of {', '.join(SCANS)}")
    for i in range(cases):
        (folder / f"case{i:02d}_0000.nii.gz").symlink_to(scans[i % len(scans)])
    return folder


def run_mode(cohort: Path, out: Path, options: PredictOptions, workers: int | None) -> dict:
    """Predict the cohort in this process (``workers`` None) or on a local Dask cluster; its figures."""
    report = RunReport()
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    pending = plan_cases(collect_cases([cohort]), out, OutputOptions(), report)
    if workers is None:
        run_cases(pending, options, OutputOptions(), progress=False)
    else:
        predict_cohort(pending, options, OutputOptions(), ClusterOptions(workers=workers), progress=False)
    wall = time.perf_counter() - start
    done = [result for result in report.results if result.status == "done"]
    seconds = sum(result.seconds for result in done)
    return {"cases": len(report.results), "done": len(done), "wall_s": wall,
            "scans_per_hour": len(done) / wall * 3600,
            "peak_mb": max((result.peak_memory_mb or 0) for result in done) if done else 0,
            "median_case_s": statistics.median(result.seconds for result in done) if done else 0,
            "overhead_s": (wall - seconds / (workers or 1)) / max(1, len(report.results)),
            "load": (load_before, os.getloadavg()[0])}


def cluster_start_seconds(workers: int) -> float:
    """Seconds to start and stop an idle local cluster of ``workers`` processes."""
    from distributed import Client

    start = time.perf_counter()
    with local_cluster(ClusterOptions(workers=workers)) as cluster, Client(cluster) as client:
        client.wait_for_workers(workers)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--model", type=Path, help="model directory (default: the bundled model)")
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    options = PredictOptions(model_dir=args.model)
    cores = local_shape(ClusterOptions(workers=1)).threads
    with_threads = dataclasses.replace(options, threads=cores)  # as a 1-worker cluster gives its worker
    print(f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()[0]:.2f}")
    print(f"cluster start+stop: {cluster_start_seconds(args.workers):.1f} s ({args.workers} workers)")
    with tempfile.TemporaryDirectory() as tmp:
        cohort = make_cohort(args.data, Path(tmp) / "cohort", args.cases)
        modes = (("in-process loop", None, options), (f"loop, {cores} threads", None, with_threads),
                 ("dask, 1 worker", 1, options), (f"dask, {args.workers} workers", args.workers, options))
        print(f"{'mode':<20} {'done':>6} {'wall s':>8} {'scans/h':>8} {'peak MB':>8} {'case s':>7} "
              f"{'overhead s/case':>15}  load before/after")
        for i, (name, workers, mode_options) in enumerate(modes):
            figures = run_mode(cohort, Path(tmp) / f"out{i}", mode_options, workers)
            print(f"{name:<20} {figures['done']:>3}/{figures['cases']:<2} {figures['wall_s']:>8.1f} "
                  f"{figures['scans_per_hour']:>8.0f} {figures['peak_mb']:>8.0f} {figures['median_case_s']:>7.2f} "
                  f"{figures['overhead_s']:>15.2f}  {figures['load'][0]:.2f}/{figures['load'][1]:.2f}", flush=True)


if __name__ == "__main__":
    main()
