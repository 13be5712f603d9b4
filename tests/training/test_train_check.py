"""``flareseg train`` refuses a dataset in which ``flareseg dataset check`` finds an error, before
writing anything (a real-scan dataset with one planted problem, or three)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from flareseg.cli.main import main
from flareseg.io import read_volume, write_labelmap


def _undeclared_value(root):
    label = read_volume(root / "labelsTr" / "ts_full.nii.gz")
    array = label.array.copy()
    array[0, 0, 0] = 200  # dataset.json declares 0..14
    write_labelmap(array, label.geometry, root / "labelsTr" / "ts_full.nii.gz")


def _other_grid(root):
    shutil.copy(root / "labelsTr" / "ts_full.nii.gz", root / "labelsTr" / "ts_dicom.nii.gz")


def _unannotated_class(root):
    label = read_volume(root / "labelsTr" / "ts_aorta.nii.gz")
    array = label.array.copy()
    array[0, 0, 0] = 1  # liver, in a case annotated for the aorta only: training would drop it silently
    write_labelmap(array, label.geometry, root / "labelsTr" / "ts_aorta.nii.gz")


def _train(dataset, recipe, out) -> int:
    return main(["train", "--dataset", str(dataset), "--recipe", str(recipe), "--out", str(out), "--no-progress"])


@pytest.mark.parametrize("plant, first", [
    (_undeclared_value, "ts_full: unknown label value(s) [200] (not in dataset.json labels)"),
    (_other_grid, "ts_dicom: label grid does not match its image: "),
    (_unannotated_class, "ts_aorta: label value(s) [1] present but not in annotated_classes"),
])
def test_train_refuses_what_dataset_check_reports_as_an_error(real_dataset, tiny_recipe_file, tmp_path, capsys,
                                                              plant, first):
    plant(real_dataset)
    assert _train(real_dataset, tiny_recipe_file(), tmp_path / "model") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"flareseg: error: {real_dataset}: dataset has 1 error(s); first: ")
    assert first in err
    assert err.endswith(f"; run `flareseg dataset check {real_dataset}` for all\n")
    assert not (tmp_path / "model").exists()


def test_the_count_and_the_first_error_in_case_order(real_dataset, tiny_recipe_file, tmp_path, capsys):
    for plant in (_undeclared_value, _other_grid, _unannotated_class):
        plant(real_dataset)
    assert _train(real_dataset, tiny_recipe_file(), tmp_path / "model") == 1
    err = capsys.readouterr().err
    assert f"{real_dataset}: dataset has 3 error(s); first: ts_aorta: label value(s) [1] present" in err
    assert main(["dataset", "check", str(real_dataset), "--quiet"]) != 0
    assert capsys.readouterr().out.strip().endswith("3 error(s), 0 warning(s)")  # the LAS label was replaced
    assert not (tmp_path / "model").exists()
