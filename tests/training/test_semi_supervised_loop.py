"""The whole teacher -> pseudo-labels -> student loop in miniature, on the real shared scans: a
teacher trained a few iterations on the labelled CT and the clinical stomach+duodenum contour,
pseudo-labels for unlabelled scans of several contrast phases, a planted unstable pseudo-label
dropped by the selection, students with each robust loss, and prediction with a student."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from flareseg import labels
from flareseg.cli.main import main
from flareseg.datasets.label_mapping import MERGED_BASE
from flareseg.io import read_volume, write_labelmap
from flareseg.recipes import load_recipe

from .conftest import tiny_recipe_dict

UNLABELLED = {"hcc005_noncontrast": "hcc005_pre_noncontrast", "hcc007_portal": "hcc007_portalvenous",
              "hcc007_10mm": "hcc007_noncontrast_10mm"}
PLANTED = "hcc007_portal"


def build_dataset(data_dir, root):
    """The labelled TotalSegmentator example CT, the TCIA case whose only label is its clinical
    contour of stomach + duodenum (a merged label), and three unlabelled TCIA HCC-TACE-Seg scans."""
    for folder in ("imagesTr", "labelsTr", "imagesUnlabelledTr"):
        (root / folder).mkdir(parents=True)
    ts, cb = data_dir / "ts_example", data_dir / "tcia_pancreatic_ct_cbct_seg_cb001"
    (root / "imagesTr" / "ts_full_0000.nii.gz").symlink_to(ts / "example_ct.nii.gz")
    (root / "labelsTr" / "ts_full.nii.gz").symlink_to(ts / "flare_labels_fullct_from_v2fast.nii.gz")
    (root / "imagesTr" / "cb001_0000.nii.gz").symlink_to(cb / "ct.nii.gz")
    contour = read_volume(cb / "label.nii.gz")  # value 1: Stomach_duo_planCT (labels.json)
    write_labelmap((contour.array == 1).astype(np.uint8) * 15, contour.geometry, root / "labelsTr" / "cb001.nii.gz")
    multiphase = data_dir / "tcia_hcc_tace_seg_multiphase"
    for case, folder in UNLABELLED.items():
        (root / "imagesUnlabelledTr" / f"{case}_0000.nii.gz").symlink_to(multiphase / folder / "ct.nii.gz")
    spec = {"channel_names": {"0": "CT"}, "labels": {**labels.nnunet_labels(), "stomach_duodenum": 15},
            "label_mapping": {"stomach_duodenum": ["stomach", "duodenum"]}, "numTraining": 2,
            "file_ending": ".nii.gz", "annotated_classes": {"cb001": [15]}, "unlabelled": sorted(UNLABELLED)}
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


def recipe_file(path, pseudo_loss):
    data = tiny_recipe_dict(epochs=1, iterations_per_epoch=2)
    data["train"]["loss"]["pseudo"] = pseudo_loss
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def loop(tmp_path_factory, data_dir):
    """One round, an unstable pseudo-label planted in it, then the loop resumed to two rounds."""
    tmp = tmp_path_factory.mktemp("loop")
    dataset = build_dataset(data_dir, tmp / "Dataset")
    recipe = recipe_file(tmp / "gce.yaml", {"name": "gce", "kwargs": {"q": 0.7}, "weight": 0.5})
    command = ["train", "--dataset", str(dataset), "--recipe", str(recipe), "--out", str(tmp / "out"),
               "--device", "cpu", "--threads", "2", "--no-progress"]
    assert main([*command, "--rounds", "1"]) == 0
    planted = tmp / "out" / "pseudoLabelsTr" / "round1" / f"{PLANTED}.nii.gz"
    moved = read_volume(planted)
    write_labelmap(np.roll(moved.array, 25, axis=2), moved.geometry, planted)
    assert main([*command, "--rounds", "2", "--keep", "0.75"]) == 0
    assert main([*command, "--rounds", "2", "--keep", "0.5"]) == 0  # finished: kept as it was, not selected again
    return tmp, dataset


def test_the_teacher_trains_on_own_labels_and_the_students_on_pseudo_labels(loop):
    tmp, _ = loop
    out = tmp / "out"
    teacher = load_recipe(out / "teacher" / "recipe.yaml")
    assert all(not phase.pseudo_labels for stage in teacher.stages for phase in teacher.phases(stage))
    assert teacher.train.loss.pseudo is None
    student = load_recipe(out / "student2" / "recipe.yaml")
    assert all(phase.pseudo_labels and "unlabelled" in phase.cases for phase in student.phases(student.stages[1]))
    assert student.train.loss.pseudo.name == "gce"
    rounds = json.loads((out / "rounds.json").read_text())
    assert [r["teacher"] for r in rounds] == [str(out / "teacher"), str(out / "student1")]
    origin = json.loads((out / "student2" / "model.json").read_text())["training"]["pseudo_labels"]
    assert origin["round"] == str((out / "pseudoLabelsTr" / "round2").resolve())


def test_the_merged_contour_constrains_the_pseudo_label_to_split_it(loop, data_dir):
    tmp, _ = loop
    contour = read_volume(data_dir / "tcia_pancreatic_ct_cbct_seg_cb001" / "label.nii.gz").array == 1
    for number in (1, 2):
        filled = read_volume(tmp / "out" / "pseudoLabelsTr" / f"round{number}" / "cb001.nii.gz").array
        assert set(np.unique(filled[contour])) <= {11, 12, MERGED_BASE}
        assert not np.isin(filled[~contour], (11, 12)).any()  # the contour annotates both: none outside it


def test_the_planted_unstable_pseudo_label_is_dropped_reported_and_not_trained_on(loop):
    tmp, _ = loop
    out = tmp / "out"
    selection = json.loads((out / "pseudoLabelsTr" / "selection.json").read_text())
    assert selection["rounds"] == [1, 2] and selection["dropped"] == [PLANTED]
    assert set(selection["entropy"]) == set(selection["instability"])  # every case's teacher entropy, per class
    assert len(selection["kept"]) == 3 and PLANTED not in selection["kept"]
    assert selection["instability"][PLANTED] == max(selection["instability"].values())
    assert json.loads((out / "rounds.json").read_text())[1]["selection"]["dropped"] == [PLANTED]
    csv_rows = (out / "pseudoLabelsTr" / "selection.csv").read_text().splitlines()
    assert csv_rows[-1].startswith(f"{PLANTED},4,") and csv_rows[-1].split(",")[3] == "False"
    cached = {folder.name: {path.stem for path in folder.glob("*/*.npz")} for folder in (out / "cache").glob("pseudo-*")}
    assert sorted(PLANTED in stems for stems in cached.values()) == [False, True]  # student 1 did, student 2 not
    assert all({"cb001", "hcc005_noncontrast", "hcc007_10mm"} <= stems for stems in cached.values())
    student2_key = json.loads((out / "student2" / "model.json").read_text())["training"]["pseudo_labels"]
    assert student2_key["selection"] == {"dropped": 1, "dropped_classes": 0}


@pytest.mark.parametrize("loss", [{"name": "sce", "kwargs": {"ce_weight": 0.1, "rce_weight": 1.0}},
                                  {"name": "beta_ce", "kwargs": {"beta": 0.5}}])
def test_a_student_trains_on_the_stored_round_with_each_robust_loss_and_predicts(loop, loss, data_dir):
    tmp, dataset = loop
    out = tmp / f"student_{loss['name']}"
    recipe = recipe_file(tmp / f"{loss['name']}.yaml", {**loss, "weight": 1.0})
    assert main(["train", "--dataset", str(dataset), "--recipe", str(recipe), "--out", str(out), "--cache",
                 str(tmp / "out" / "cache"), "--pseudo-labels", str(tmp / "out" / "pseudoLabelsTr" / "round2"),
                 "--device", "cpu", "--threads", "2", "--no-progress"]) == 0
    assert load_recipe(out / "recipe.yaml").train.loss.pseudo.name == loss["name"]
    image = dataset / "imagesUnlabelledTr" / "hcc007_10mm_0000.nii.gz"
    mask = tmp / f"{loss['name']}_mask.nii.gz"
    assert main(["predict", "-i", str(image), "-o", str(mask), "-m", str(out), "--quiet"]) == 0
    assert read_volume(mask).geometry.matches(read_volume(image).geometry)
