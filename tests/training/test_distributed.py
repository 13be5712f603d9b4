"""Training on two processes (DistributedDataParallel through torchrun, gloo on CPU) against one
process with the same global batch."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from flareseg.cli.main import main
from flareseg.cli.train_cmd import without_nproc
from flareseg.training.distributed import World, on_main, world_from_environment

STAGES = ("coarse", "abdominal_large", "small")


@pytest.fixture
def full_dataset(real_dataset, tmp_path):
    """The two fully labelled real scans of the default model's training set: every case of a batch
    annotates the same classes, so the loss of a batch is the mean of its halves' losses."""
    spec = json.loads((real_dataset / "dataset.json").read_text())
    for case in ("ts_aorta",):
        (real_dataset / "imagesTr" / f"{case}_0000.nii.gz").unlink()
        (real_dataset / "labelsTr" / f"{case}.nii.gz").unlink()
    shutil.rmtree(real_dataset / "imagesUnlabelledTr")
    spec.update(numTraining=2, annotated_classes={}, unlabelled=[])
    (real_dataset / "dataset.json").write_text(json.dumps(spec))
    return real_dataset


def test_two_processes_give_the_weights_of_one_process_with_the_same_global_batch(full_dataset, tiny_recipe_file,
                                                                                 tmp_path):
    recipe = str(tiny_recipe_file(epochs=2, iterations_per_epoch=2))
    common = ["train", "--dataset", str(full_dataset), "--recipe", recipe, "--device", "cpu", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "two"), "--nproc", "2", "--batch-size", "2", "--threads", "1"]) == 0
    assert main([*common, "--out", str(tmp_path / "one"), "--batch-size", "4", "--threads", "1"]) == 0
    assert json.loads((tmp_path / "two" / "model.json").read_text())["training"]["world_size"] == 2
    assert json.loads((tmp_path / "one" / "model.json").read_text())["training"]["world_size"] == 1
    for stage in STAGES:  # stored as float16: within a unit in the last place of weights near 1
        two, one = torch.load(tmp_path / "two" / f"{stage}.pt"), torch.load(tmp_path / "one" / f"{stage}.pt")
        assert two.keys() == one.keys()
        for key in one:
            torch.testing.assert_close(two[key].float(), one[key].float(), atol=2e-3, rtol=2e-3, msg=f"{stage}: {key}")
    logs = [json.loads((tmp_path / run / "training" / "coarse" / "log.json").read_text()) for run in ("two", "one")]
    assert len(logs[0]) == len(logs[1]) == 2  # rank 0 alone logged, once per epoch


def test_the_world_comes_from_torchruns_variables_and_one_process_runs_work_itself():
    assert world_from_environment({}) == World() and World().main
    assert world_from_environment({"RANK": "1", "WORLD_SIZE": "2"}) == World(1, 2)
    assert not World(1, 2).main
    assert on_main(World(), lambda: 42) == 42


@pytest.mark.parametrize("argv, expected", [
    (["train", "--nproc", "2", "--out", "m"], ["train", "--out", "m"]),
    (["train", "--nproc=2", "--out", "m"], ["train", "--out", "m"]),
    (["train", "--out", "m"], ["train", "--out", "m"]),
])
def test_the_processes_run_the_same_command_without_nproc(argv, expected):
    assert without_nproc(argv) == expected


def test_a_killed_rank_stops_the_job_in_one_line_and_resume_finishes_it(full_dataset, tiny_recipe_file, tmp_path):
    import subprocess
    import sys
    import time

    import psutil

    from flareseg.training.loop import CHECKPOINT

    recipe = str(tiny_recipe_file(epochs=3, iterations_per_epoch=12))
    out = tmp_path / "model"
    command = [sys.executable, "-m", "flareseg", "train", "--dataset", str(full_dataset), "--recipe", recipe,
               "--out", str(out), "--device", "cpu", "--no-progress", "--nproc", "2", "--threads", "1"]
    launcher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    checkpoint = out / "training" / "coarse" / CHECKPOINT
    deadline = time.monotonic() + 240
    while not checkpoint.is_file() and launcher.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    ranks = [p for p in psutil.Process(launcher.pid).children(recursive=True)
             if "flareseg" in " ".join(p.cmdline()) and "torch.distributed.run" not in " ".join(p.cmdline())]
    assert checkpoint.is_file() and len(ranks) == 2, launcher.stderr.read() if launcher.poll() is not None else ranks
    ranks[-1].kill()
    _, error = launcher.communicate(timeout=240)
    assert launcher.returncode == 1
    assert error.strip().splitlines()[-1] == ("flareseg: error: a training process failed (exit code 1); run the "
                                              "same command with --resume to continue from the last checkpoint")
    assert not (out / "model.json").exists()
    assert main(["train", "--dataset", str(full_dataset), "--recipe", recipe, "--out", str(out), "--device", "cpu",
                 "--no-progress", "--nproc", "2", "--threads", "1", "--resume"]) == 0
    assert json.loads((out / "model.json").read_text())["training"]["world_size"] == 2
    history = torch.load(checkpoint, weights_only=False)["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]  # continued, not restarted
