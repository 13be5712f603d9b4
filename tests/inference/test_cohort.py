"""Cohort prediction on Dask: real scans on local worker processes, a manifest, re-runs, killed workers."""

from __future__ import annotations

import csv
import gzip
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from flareseg.cli.main import build_parser, main
from flareseg.inference.cohort import ClusterOptions, Job, largest_first, local_shape
from flareseg.io import read_volume

pytest.importorskip("distributed")


@pytest.fixture
def cohort(tmp_path, data_dir):
    """Three real scans (a 3 mm CT, a 30-slice cut of it, a 512x512 DICOM series), a truncated gzip
    and a label map in CT's clothes."""
    folder = tmp_path / "cohort"
    folder.mkdir()
    example = data_dir / "ts_example"
    shutil.copy(example / "example_ct.nii.gz", folder / "full_0000.nii.gz")
    shutil.copy(example / "example_ct_sm.nii.gz", folder / "small_0000.nii.gz")
    shutil.copytree(example / "example_ct_dicom", folder / "series")
    (folder / "corrupt_0000.nii.gz").write_bytes((example / "example_ct_sm.nii.gz").read_bytes()[:20000])
    shutil.copy(example / "flare_labels_sm_from_v2normal.nii.gz", folder / "labels_0000.nii.gz")
    return folder


def _manifest(out: Path) -> dict[str, dict]:
    with open(out / "manifest.csv", newline="") as handle:
        return {row["case"]: row for row in csv.DictReader(handle)}


def test_two_workers_write_the_masks_of_the_in_process_path_and_a_manifest(cohort, tiny_model, tmp_path, capsys):
    command = ["predict", "-i", str(cohort), "-m", str(tiny_model)]
    out, reference = tmp_path / "out", tmp_path / "reference"
    assert main(command + ["-o", str(out), "--workers", "2"]) == 1
    printed = capsys.readouterr()
    assert printed.out.strip().splitlines()[-1] == (
        f"3 mask(s) written to {out}, 0 already there, 2 failed; manifest in {out / 'manifest.csv'}, "
        f"summary in {out / 'summary.json'}")
    rows = _manifest(out)
    assert {case: row["status"] for case, row in rows.items()} == {
        "corrupt": "failed", "full": "done", "labels": "failed", "series": "done", "small": "done"}
    assert "corrupt_0000.nii.gz: truncated file" in rows["corrupt"]["error"]
    assert "labels_0000.nii.gz: not a CT scan" in rows["labels"]["error"]
    for row in rows.values():
        assert "\n" not in row["error"] and row["input"].startswith(str(cohort))
        if row["status"] == "done":
            assert float(row["seconds"]) > 0 and float(row["peak_memory_mb"]) > 50
    assert main(command + ["-o", str(reference), "--workers", "1", "--quiet"]) == 1  # the in-process path
    for case in ("full", "small", "series"):
        np.testing.assert_array_equal(read_volume(out / f"{case}.nii.gz").array,
                                      read_volume(reference / f"{case}.nii.gz").array)
    assert {case: row["status"] for case, row in _manifest(reference).items()} == {
        case: row["status"] for case, row in rows.items()}

    # a re-run touches nothing; the failures stay failed, even fixed, until --retry-failed
    stamps = {path.name: path.stat().st_mtime_ns for path in out.glob("*.nii.gz")}
    shutil.copy(cohort / "small_0000.nii.gz", cohort / "corrupt_0000.nii.gz")
    assert main(command + ["-o", str(out), "--workers", "2"]) == 1
    assert "2 failed (2 in an earlier run: --retry-failed redoes them)" in capsys.readouterr().out
    assert {path.name: path.stat().st_mtime_ns for path in out.glob("*.nii.gz")} == stamps
    assert [row["status"] for row in _manifest(out).values()].count("skipped") == 3
    assert _manifest(out)["corrupt"]["error"] == rows["corrupt"]["error"]
    assert main(command + ["-o", str(out), "--workers", "2", "--retry-failed", "--quiet"]) == 1
    rows = _manifest(out)
    assert (rows["corrupt"]["status"], rows["labels"]["status"]) == ("done", "failed")
    assert {path.name: path.stat().st_mtime_ns for path in out.glob("*.nii.gz") if path.name in stamps} == stamps


class _SlowAndCrashingCases:
    """Test-only worker plugin: in each worker process, the first attempt at case ``slow`` waits for
    the test to kill its worker, and case ``crash`` ends its worker process every time."""

    def __init__(self, folder: Path) -> None:
        self.folder = str(folder)

    def setup(self, worker) -> None:
        import flareseg.inference.predict as predict_module

        real, folder = getattr(predict_module.predict_case, "real", predict_module.predict_case), self.folder

        def predict_case(case, *args, **kwargs):
            with open(os.path.join(folder, "attempts.txt"), "a") as log:
                log.write(f"{case.name} {os.getpid()}\n")
            if case.name == "crash":
                os._exit(1)
            if case.name == "slow" and not os.path.exists(os.path.join(folder, "slow.pid")):
                Path(folder, "slow.pid").write_text(str(os.getpid()))
                time.sleep(120)
            return real(case, *args, **kwargs)

        predict_case.real = real
        predict_module.predict_case = predict_case


def _plugin(folder: Path):
    """:class:`_SlowAndCrashingCases` as a WorkerPlugin, pickled by value (workers cannot import tests)."""
    import cloudpickle
    from distributed.diagnostics.plugin import WorkerPlugin

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return type("SlowAndCrashingCases", (_SlowAndCrashingCases, WorkerPlugin), {})(folder)


def _kill_the_slow_worker(folder: Path, killed: list) -> None:
    """Wait for case ``slow`` to start, then SIGKILL its worker, a child process of this test."""
    import psutil

    marker, deadline = folder / "slow.pid", time.monotonic() + 120
    while not marker.exists() or not marker.read_text():
        if time.monotonic() > deadline:
            return
        time.sleep(0.02)
    pid = int(marker.read_text())
    if pid in {child.pid for child in psutil.Process().children(recursive=True)}:
        psutil.Process(pid).kill()
        killed.append(pid)


def test_a_killed_worker_loses_nothing_and_a_case_that_kills_workers_fails(data_dir, tiny_model, tmp_path, capsys):
    from distributed import Client

    from flareseg.inference.cohort import local_cluster

    scans = tmp_path / "scans"
    scans.mkdir()
    for name in ("slow", "crash", "small"):
        shutil.copy(data_dir / "ts_example" / "example_ct_sm.nii.gz", scans / f"{name}_0000.nii.gz")
    shutil.copy(data_dir / "ts_example" / "example_ct.nii.gz", scans / "full_0000.nii.gz")
    out, killed = tmp_path / "out", []
    with local_cluster(ClusterOptions(workers=2, allowed_failures=1)) as cluster, Client(cluster) as client:
        client.register_plugin(_plugin(tmp_path), name="slow-and-crashing-cases")
        killer = threading.Thread(target=_kill_the_slow_worker, args=(tmp_path, killed), daemon=True)
        killer.start()
        code = main(["predict", "-i", str(scans), "-o", str(out), "-m", str(tiny_model),
                     "--scheduler", cluster.scheduler_address])
        killer.join(5)
    assert code == 1 and len(killed) == 1
    attempts = [line.split() for line in (tmp_path / "attempts.txt").read_text().splitlines()]
    slow = [int(pid) for name, pid in attempts if name == "slow"]
    assert len(slow) == 2 and slow[0] == killed[0] != slow[1]  # started again in another worker process
    assert [name for name, _ in attempts].count("crash") == 2  # allowed_failures=1: tried twice, then failed
    rows = _manifest(out)
    assert {case: row["status"] for case, row in rows.items()} == {
        "crash": "failed", "full": "done", "slow": "done", "small": "done"}
    assert rows["crash"]["error"].startswith("its worker process died 2 times while running it")
    np.testing.assert_array_equal(read_volume(out / "slow.nii.gz").array, read_volume(out / "small.nii.gz").array)
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(f"3 mask(s) written to {out}, 0 already there, "
                                                                       "1 failed; manifest in")


def test_one_scan_and_one_worker_predict_in_process_without_importing_dask(data_dir, tiny_model, tmp_path):
    script = (
        "import sys\nfrom flareseg.cli.main import main\n"
        f"ct = {str(data_dir / 'ts_example' / 'example_ct_sm.nii.gz')!r}\n"
        f"other = {str(data_dir / 'ts_example' / 'example_ct.nii.gz')!r}\n"
        f"assert main(['predict', '-i', ct, '-o', {str(tmp_path / 'one.nii.gz')!r}, '-m', {str(tiny_model)!r}, "
        "'--workers', '2', '--quiet']) == 0\n"
        f"assert main(['predict', '-i', ct, other, '-o', {str(tmp_path / 'many')!r}, '-m', {str(tiny_model)!r}, "
        "'--workers', '1', '--quiet']) == 0\n"
        "assert not {'dask', 'distributed'} & set(sys.modules), sorted(m for m in sys.modules if 'dask' in m)\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "DASK_SCHEDULER_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "one.nii.gz").is_file() and (tmp_path / "many" / "manifest.csv").is_file()
    assert [row["status"] for row in _manifest(tmp_path / "many").values()] == ["done", "done"]


def test_the_scheduler_address_defaults_to_the_dask_variable(monkeypatch):
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://10.0.0.7:8786")
    args = build_parser().parse_args(["predict", "-i", "a.nii.gz", "-o", "out"])
    assert (args.scheduler, args.workers, args.retry_failed) == ("tcp://10.0.0.7:8786", 1, False)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS")
    assert build_parser().parse_args(["predict", "-i", "a.nii.gz", "-o", "out"]).scheduler is None


def test_an_unreachable_scheduler_is_a_one_line_error(cohort, tiny_model, tmp_path, capsys, monkeypatch):
    import dask

    monkeypatch.setitem(dask.config.config["distributed"]["comm"]["timeouts"], "connect", "1s")
    assert main(["predict", "-i", str(cohort / "small_0000.nii.gz"), str(cohort / "full_0000.nii.gz"),
                 "-o", str(tmp_path / "out"), "-m", str(tiny_model), "--scheduler", "tcp://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("flareseg: error: tcp://127.0.0.1:9: cannot reach the Dask scheduler")
    assert {row["status"] for row in _manifest(tmp_path / "out").values()} == {"pending"}


def test_a_local_worker_gets_its_share_of_cores_and_memory():
    shape = local_shape(ClusterOptions(workers=3), cores=16, memory_bytes=96 * 2**30)
    assert (shape.workers, shape.threads, shape.memory_limit_bytes) == (3, 5, 32 * 2**30)
    assert local_shape(ClusterOptions(workers=4), cores=2, memory_bytes=2**30).threads == 1
    assert local_shape(ClusterOptions(workers=2, memory_limit_bytes=123), cores=2, memory_bytes=2**30) \
        .memory_limit_bytes == 123


def test_cases_go_out_largest_first(tmp_path):
    sizes = {"a.nii.gz": 10, "b.nii.gz": 300, "c.nii.gz": 300, "d.nii.gz": 20}
    jobs = []
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(gzip.compress(os.urandom(size), compresslevel=0))
        jobs.append(Job(name[0], tmp_path / name, print))
    series = tmp_path / "series"
    series.mkdir()
    for i in range(3):
        (series / f"{i}.dcm").write_bytes(b"x" * 200)
    jobs.append(Job("series", series, print))
    assert [job.name for job in largest_first(jobs)] == ["series", "b", "c", "d", "a"]
