"""scripts/leave_one_out.py: folds without their held-out case, and held-out-only scores."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest

from flareseg.datasets import list_cases, load_spec
from flareseg.datasets.check import check_dataset

from .conftest import REPO_ROOT


def _script():
    spec = importlib.util.spec_from_file_location("leave_one_out", REPO_ROOT / "scripts" / "leave_one_out.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_fold_holds_every_case_but_the_held_out_one(real_dataset, tmp_path):
    fold = _script().make_fold(real_dataset, "ts_aorta", tmp_path / "fold")
    spec = load_spec(fold)
    assert sorted(c.case_id for c in list_cases(spec)) == ["tcia_cb001", "ts_dicom", "ts_full"]  # unlabelled kept
    assert "ts_aorta" not in spec.annotated_classes
    assert json.loads((fold / "dataset.json").read_text())["numTraining"] == 2  # the labelled ones left
    assert check_dataset(fold, progress=False).errors == []


def test_every_labelled_case_is_scored_by_a_model_that_never_saw_it(real_dataset, tiny_recipe_file, tmp_path):
    for case_id in ("ts_aorta", "tcia_cb001"):  # two folds keep the test short
        for folder in ("imagesTr", "labelsTr"):
            for path in (real_dataset / folder).glob(f"{case_id}*"):
                path.unlink()
    spec = json.loads((real_dataset / "dataset.json").read_text())
    spec["annotated_classes"] = {}
    (real_dataset / "dataset.json").write_text(json.dumps(spec))
    recipe = tiny_recipe_file(epochs=1, iterations_per_epoch=1)
    out = tmp_path / "loso"
    assert _script().run(real_dataset, out, ["--recipe", str(recipe), "--device", "cpu", "--no-progress"]) == 0
    for held_out, trained_on in (("ts_full", ["ts_dicom"]), ("ts_dicom", ["ts_full"])):
        meta = json.loads((out / "folds" / held_out / "model" / "model.json").read_text())
        assert meta["training"]["train_cases"] == trained_on
    rows = list(csv.DictReader(open(out / "pred" / "scores.csv")))
    assert {r["case"] for r in rows} == {"ts_full", "ts_dicom"}


def test_rules_go_to_the_evaluation_and_the_rest_to_training():
    split = _script().split_rules
    assert split(["--recipe", "r.yaml", "--rules", "flare23", "--epochs", "2"]) == (
        ["--recipe", "r.yaml", "--epochs", "2"], ["--rules", "flare23"])
    assert split(["--recipe", "r.yaml"]) == (["--recipe", "r.yaml"], [])


def test_case_options_choose_the_folds_and_their_order():
    script = _script()
    assert script.take_option(["--case", "b", "--epochs", "1", "--case=a"], "--case") == (["--epochs", "1"], ["b", "a"])
    assert script.held_out_cases(["a", "b", "c"], ["c", "a", "c"]) == ["c", "a"]
    assert script.held_out_cases(["a", "b"], []) == ["a", "b"]
    with pytest.raises(SystemExit, match="--case z: not a labelled case"):
        script.held_out_cases(["a", "b"], ["z"])
