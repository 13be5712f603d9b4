"""The efficiency sampler measures a real process that holds a known amount of memory for a known time."""

from __future__ import annotations

import csv
import json
import sys

import pytest

from flareseg.evaluation.efficiency import measure_command
from flareseg.evaluation.efficiency_report import write_efficiency

ALLOCATE = (
    "import time, numpy as np; time.sleep(0.3); block = np.ones({mb} * 2**20 // 8); "
    "time.sleep({hold}); del block; time.sleep(0.3)"
)


def test_peak_memory_and_time_of_a_known_allocation():
    trace = measure_command([sys.executable, "-c", ALLOCATE.format(mb=400, hold=1.5)])
    figures = trace.summary()
    assert figures["returncode"] == 0
    # 400 MB of ones plus an interpreter with NumPy (some tens of MB).
    assert 400 <= figures["peak_ram_mb"] <= 400 + 150
    assert 2.1 <= figures["time_s"] <= 2.1 + 3.0
    # The block is held for 1.5 s: at least ~1.2 s of it must show in the area under the curve.
    assert figures["auc_ram_mb_s"] >= 400 * 1.2
    assert figures["auc_ram_mb_s"] <= figures["peak_ram_mb"] * figures["time_s"]
    assert figures["peak_gpu_mb"] is None or figures["peak_gpu_mb"] >= 0
    assert abs(len(trace.ram_mb) * 0.1 - figures["time_s"]) < 1.0


def test_running_time_ends_at_the_exit_not_at_the_next_sample():
    trace = measure_command([sys.executable, "-c", "import time; time.sleep(0.2)"], interval_s=5.0)
    assert trace.returncode == 0
    assert 0.2 <= trace.wall_s < 2.5  # a sample every 5 s: the exit is not seen at the next one
    assert trace.times_s == [pytest.approx(0.0, abs=0.5)]  # the sample at the start, none after the exit


def test_child_processes_count_towards_memory():
    child = ALLOCATE.format(mb=200, hold=1.0).replace('"', '\\"')
    parent = f'import subprocess, sys; subprocess.run([sys.executable, "-c", "{child}"], check=True)'
    figures = measure_command([sys.executable, "-c", parent]).summary()
    assert figures["peak_ram_mb"] >= 200


def test_timeout_kills_the_command():
    trace = measure_command([sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=0.5)
    assert trace.returncode == -9 and trace.wall_s < 10
    # the kill's exit status is read once, by one thread: never lost to a second reader
    assert [measure_command(["sleep", "5"], interval_s=0.02, timeout_s=0.05).returncode for _ in range(10)] == [-9] * 10


def test_reports_are_written(tmp_path):
    traces = {"case_a": measure_command([sys.executable, "-c", "pass"])}
    write_efficiency(traces, tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "efficiency.csv")))
    assert rows[0]["case"] == "case_a" and float(rows[0]["time_s"]) > 0
    payload = json.loads((tmp_path / "efficiency.json").read_text())
    assert payload["samples"]["case_a"]["interval_s"] == pytest.approx(0.1)
    assert (tmp_path / "plots" / "case_a.png").read_bytes()[:4] == b"\x89PNG"


def test_missing_program_is_an_input_error():
    from flareseg.errors import InputError

    with pytest.raises(InputError, match="cannot run"):
        measure_command(["no-such-program-flareseg"])
