"""Training on real scans: the loss falls, the model directory predicts, and --resume is exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from flareseg.inference.model import file_sha256, load_model, weights_path
from flareseg.inference.predict import PredictOptions, predict
from flareseg.io import read_volume
from flareseg.recipes import load_recipe
from flareseg.training.loop import CHECKPOINT, RunOptions
from flareseg.training.train import split_cases, train_model
from flareseg.datasets.layout import list_cases, load_spec


def test_training_lowers_the_loss_and_the_model_predicts_a_real_scan(real_dataset, tiny_recipe_file, tmp_path, data_dir):
    recipe = load_recipe(tiny_recipe_file(epochs=3, iterations_per_epoch=6))
    model_dir = train_model(real_dataset, recipe, tmp_path / "model", RunOptions(progress=False))

    log = json.loads((model_dir / "training" / "coarse" / "log.json").read_text())
    assert [row["epoch"] for row in log] == [1, 2, 3]
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    assert (model_dir / "training" / "coarse" / "curves.png").stat().st_size > 0
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["training"]["train_cases"] == ["ts_aorta", "ts_dicom", "ts_full"]  # the unlabelled case is skipped
    assert set(meta["training"]["stages"]) == {"coarse", "abdominal_large", "small"}
    assert meta["weights_sha256"] == {stage: file_sha256(weights_path(model_dir, stage)) for stage in meta["stages"]}
    assert not [p.name for p in model_dir.rglob(".*")]  # no temporary left behind

    ct_path = data_dir / "ts_example" / "example_ct_dicom"  # a DICOM folder, LPS, 512x512
    mask = predict(ct_path, tmp_path / "mask.nii.gz", load_model(model_dir, backend="torch"))
    written = read_volume(tmp_path / "mask.nii.gz")
    reference = read_volume(data_dir / "ts_example" / "example_ct_dicom.nii.gz")
    assert written.array.shape == reference.array.shape
    assert written.geometry.matches(reference.geometry)
    assert written.array.dtype == np.uint8 and set(np.unique(written.array)) <= set(range(14))
    assert np.array_equal(written.array, mask.array)


def test_partial_case_only_trains_the_stages_of_its_classes(real_dataset, tiny_recipe_file, tmp_path):
    from flareseg.training.samples import cache_samples, load_samples

    recipe = load_recipe(tiny_recipe_file())
    cases = split_cases(list_cases(load_spec(real_dataset)), 0.0, 0).train
    folders = cache_samples(cases, recipe, tmp_path / "cache", progress=False)
    coarse = load_samples(cases, folders["coarse"])
    aorta = [s for s in coarse if s.case_id == "ts_aorta"]
    assert len(aorta) == 1
    assert aorta[0].annotated.tolist() == [True] + [i == 5 for i in range(1, 14)]
    assert set(np.unique(aorta[0].label)) == {0, 5}  # channel of the aorta (id 5) is 5 in the coarse stage
    large = load_samples(cases, folders["abdominal_large"])
    assert {s.case_id for s in large} == {"ts_full", "ts_dicom"}


def test_an_existing_run_is_not_overwritten_without_resume(real_dataset, tiny_recipe_file, tmp_path):
    from flareseg.errors import InputError

    recipe = load_recipe(tiny_recipe_file(epochs=1, iterations_per_epoch=1))
    train_model(real_dataset, recipe, tmp_path / "model", RunOptions(progress=False))
    with pytest.raises(InputError, match="--resume"):
        train_model(real_dataset, recipe, tmp_path / "model", RunOptions(progress=False))
    other = load_recipe(tiny_recipe_file(epochs=5, iterations_per_epoch=1))
    with pytest.raises(InputError, match="same recipe"):
        train_model(real_dataset, other, tmp_path / "model", RunOptions(progress=False, resume=True))


def _kill_after_first_checkpoint(command, checkpoint, timeout_s=240):
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout_s
    while not checkpoint.is_file():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"training ended before its first checkpoint: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    process.kill()  # mid-way through epoch 2
    process.wait()


def test_resume_after_a_killed_run_matches_an_uninterrupted_run(real_dataset, tiny_recipe_file, tmp_path):
    recipe_path = tiny_recipe_file(epochs=3, iterations_per_epoch=12)
    recipe = load_recipe(recipe_path)
    options = RunOptions(progress=False, threads=1)
    cache = tmp_path / "cache"
    reference = train_model(real_dataset, recipe, tmp_path / "uninterrupted", options, cache)

    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "flareseg.cli.main", "train", "--dataset", str(real_dataset),
               "--recipe", str(recipe_path), "--out", str(killed), "--device", "cpu", "--threads", "1",
               "--cache", str(cache), "--no-progress"]
    checkpoint = killed / "training" / "coarse" / CHECKPOINT
    _kill_after_first_checkpoint(command, checkpoint)
    state = torch.load(checkpoint, weights_only=False)
    assert state["epoch"] == 1 and not (killed / "model.json").exists()  # killed during epoch 2

    train_model(real_dataset, recipe, killed, RunOptions(progress=False, threads=1, resume=True), cache)
    resumed = torch.load(killed / "training" / "coarse" / CHECKPOINT, weights_only=False)
    uninterrupted = torch.load(reference / "training" / "coarse" / CHECKPOINT, weights_only=False)
    assert [row["epoch"] for row in resumed["history"]] == [1, 2, 3]
    for key, value in uninterrupted["net"].items():
        assert torch.allclose(resumed["net"][key], value, atol=1e-6), key
    for a, b in zip(resumed["optimizer"]["state"].values(), uninterrupted["optimizer"]["state"].values()):
        assert torch.allclose(a["exp_avg"], b["exp_avg"], atol=1e-6)
        assert torch.allclose(a["exp_avg_sq"], b["exp_avg_sq"], atol=1e-8)
    for stage in ("coarse", "abdominal_large", "small"):
        assert weights_path(killed, stage).is_file()


def test_a_stage_without_annotated_cases_is_a_clear_error(real_dataset, tiny_recipe_file, tmp_path):
    from flareseg.errors import InputError

    from flareseg.io import write_labelmap

    for case in ("ts_full", "ts_dicom"):  # only aortas anywhere (a label keeping other organs fails dataset check)
        label = read_volume(real_dataset / "labelsTr" / f"{case}.nii.gz")
        write_labelmap((label.array == 5) * 5, label.geometry, real_dataset / "labelsTr" / f"{case}.nii.gz")
    spec_path = real_dataset / "dataset.json"
    spec = json.loads(spec_path.read_text())
    spec["annotated_classes"] = {"ts_full": [5], "ts_dicom": [5], "ts_aorta": [5]}
    spec_path.write_text(json.dumps(spec))
    recipe = load_recipe(tiny_recipe_file(epochs=1, iterations_per_epoch=1))
    with pytest.raises(InputError, match="'abdominal_large': no training case annotates"):
        train_model(real_dataset, recipe, tmp_path / "model", RunOptions(progress=False))
    assert not (tmp_path / "model").exists()  # checked before anything is written


def test_epochs_on_the_command_line_sets_every_stage_and_is_saved(real_dataset, tiny_recipe_file, tmp_path):
    import yaml

    from flareseg.cli.main import main

    recipe_path = tiny_recipe_file(stage_epochs={"coarse": 3, "small": 2}, epochs=2, iterations_per_epoch=1)
    out = tmp_path / "model"
    threads = torch.get_num_threads()
    try:
        assert main(["train", "--dataset", str(real_dataset), "--recipe", str(recipe_path), "--out", str(out),
                     "--device", "cpu", "--threads", "1", "--epochs", "1", "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)

    saved = load_recipe(out / "recipe.yaml")
    assert saved.train.epochs == 1 and [stage.epochs for stage in saved.stages] == [None, None, None]
    assert yaml.safe_load((out / "recipe.yaml").read_text())["train"]["epochs"] == 1
    for stage in ("coarse", "abdominal_large", "small"):
        log = json.loads((out / "training" / stage / "log.json").read_text())
        assert [row["epoch"] for row in log] == [1], stage


def test_a_merged_clinical_contour_trains_beside_full_labels(real_dataset, tiny_recipe_file, tmp_path, data_dir):
    """The TCIA case's one stomach+duodenum contour, declared as a merged label, trains beside full labels."""
    from flareseg.io import write_labelmap

    source = data_dir / "tcia_pancreatic_ct_cbct_seg_cb001"
    contour = read_volume(source / "label.nii.gz")  # 1 = Stomach_duo_planCT (labels.json); the rest is not FLARE
    write_labelmap((contour.array == 1).astype(np.uint8) * 20, contour.geometry,
                   real_dataset / "labelsTr" / "tcia_cb001.nii.gz")
    image = "tcia_cb001_0000.nii.gz"  # now labelled: its image moves to imagesTr
    (real_dataset / "imagesUnlabelledTr" / image).rename(real_dataset / "imagesTr" / image)
    spec = json.loads((real_dataset / "dataset.json").read_text())
    spec["labels"]["stomach_duodenum"] = 20
    spec["label_mapping"] = {"stomach_duodenum": ["stomach", "duodenum"]}
    spec["annotated_classes"]["tcia_cb001"] = [20]
    spec["unlabelled"] = []
    (real_dataset / "dataset.json").write_text(json.dumps(spec))

    recipe = load_recipe(tiny_recipe_file(epochs=1, iterations_per_epoch=4, batch_size=4))
    model_dir = train_model(real_dataset, recipe, tmp_path / "model", RunOptions(progress=False))
    meta = json.loads((model_dir / "model.json").read_text())
    assert "tcia_cb001" in meta["training"]["train_cases"]
    summary = meta["training"]["stages"]
    assert summary["coarse"]["samples"] == 4  # every labelled case, the merged one included
    assert summary["abdominal_large"]["samples"] == 2 * 4  # 4 crops of ts_full and ts_dicom; the contour holds none
    log = json.loads((model_dir / "training" / "coarse" / "log.json").read_text())
    assert np.isfinite(log[0]["train_loss"])
