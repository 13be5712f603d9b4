"""`flareseg pseudolabel`: rounds of pseudo-labels stored beside a dataset, resumed, and selected."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from flareseg.cli.main import main
from flareseg.data import default_model_dir
from flareseg.datasets.label_mapping import MERGED_BASE
from flareseg.errors import InputError
from flareseg.inference.predict import predict
from flareseg.io import read_volume, write_labelmap
from flareseg.training.pseudo_rounds import PROVENANCE, pseudolabel_round, round_folder


@pytest.fixture
def dataset(tmp_path, data_dir):
    """The TCIA case with its real stomach+duodenum contour declared as one merged label (its other
    organs unannotated), and an unlabelled arterial-phase scan."""
    source = data_dir / "tcia_pancreatic_ct_cbct_seg_cb001"
    root = tmp_path / "Dataset"
    for folder in ("imagesTr", "labelsTr", "imagesUnlabelledTr"):
        (root / folder).mkdir(parents=True)
    shutil.copy(source / "ct.nii.gz", root / "imagesTr" / "cb001_0000.nii.gz")
    shutil.copy(source / "label.nii.gz", root / "labelsTr" / "cb001.nii.gz")
    shutil.copy(data_dir / "tcia_hcc_tace_seg_hcc006" / "ct.nii.gz", root / "imagesUnlabelledTr" / "hcc006_0000.nii.gz")
    ids = {name: entry["id"] for name, entry in json.loads((source / "labels.json").read_text())["mapping"].items()}
    mapping = {name: None for name in ids}
    mapping["Stomach_duo_planCT"] = ["stomach", "duodenum"]
    spec = {"channel_names": {"0": "CT"}, "labels": {"background": 0, **ids}, "numTraining": 1,
            "file_ending": ".nii.gz", "label_mapping": mapping, "unlabelled": ["hcc006"]}
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


def test_a_round_fills_what_cases_do_not_annotate_splits_the_merged_contour_and_resumes(dataset, data_dir):
    report = pseudolabel_round(dataset, default_model_dir(), progress=False)
    folder = round_folder(dataset, 1)
    assert report.number == 1 and sorted(report.done) == ["cb001", "hcc006"] and not report.failed
    provenance = json.loads((folder / PROVENANCE).read_text())
    assert provenance["round"] == 1 and set(provenance["cases"]) == {"cb001", "hcc006"}
    assert provenance["cases"]["hcc006"]["kind"] == "unlabelled"

    # the unlabelled scan takes the teacher's prediction whole, on its own grid
    teacher = predict(dataset / "imagesUnlabelledTr" / "hcc006_0000.nii.gz")
    stored = read_volume(folder / "hcc006.nii.gz")
    assert stored.geometry.matches(teacher.geometry) and np.array_equal(stored.array, teacher.array)

    # the partially labelled case: inside its contour only stomach, duodenum or the merged code;
    # stomach and duodenum nowhere else (the contour annotates them); other organs from the teacher
    contour = read_volume(data_dir / "tcia_pancreatic_ct_cbct_seg_cb001" / "label.nii.gz").array == 1
    filled = read_volume(folder / "cb001.nii.gz").array
    predicted = predict(dataset / "imagesTr" / "cb001_0000.nii.gz").array
    assert set(np.unique(filled[contour])) <= {11, 12, MERGED_BASE}
    split = contour & np.isin(predicted, (11, 12))
    assert split.any() and np.array_equal(filled[split], predicted[split])
    assert np.all(filled[contour & ~np.isin(predicted, (11, 12))] == MERGED_BASE)
    assert not np.isin(filled[~contour], (11, 12)).any()
    others = ~contour & (predicted > 0) & ~np.isin(predicted, (11, 12))
    assert others.any() and np.array_equal(filled[others], predicted[others])

    # an interrupted round resumes: only the missing case is redone
    (folder / "cb001.nii.gz").unlink()
    again = pseudolabel_round(dataset, default_model_dir(), progress=False)
    assert again.number == 1 and again.done == ["cb001"] and again.kept == ["hcc006"]


def test_another_teacher_starts_the_next_round_and_selection_drops_the_unstable_case(dataset, tmp_path, capsys):
    assert main(["pseudolabel", "--dataset", str(dataset), "-m", str(default_model_dir()), "--quiet"]) == 0
    student = tmp_path / "student"
    shutil.copytree(default_model_dir(), student)
    with open(student / "recipe.yaml", "a") as handle:
        handle.write("# retrained\n")  # another teacher: its recipe file differs
    with pytest.raises(InputError, match="round 1 was written by another teacher"):
        pseudolabel_round(dataset, student, number=1, progress=False)
    assert main(["pseudolabel", "--dataset", str(dataset), "-m", str(student), "--quiet"]) == 0
    assert (round_folder(dataset, 2) / "cb001.nii.gz").is_file()

    # plant an unstable pseudo-label: round 2 of hcc006 moved by 20 voxels
    path = round_folder(dataset, 2) / "hcc006.nii.gz"
    moved = read_volume(path)
    write_labelmap(np.roll(moved.array, 20, axis=2), moved.geometry, path)
    assert main(["pseudolabel", "--dataset", str(dataset), "--select", "--keep", "0.5"]) == 0
    assert "kept 1 of 2 case(s); dropped (least stable first): hcc006" in capsys.readouterr().out
    selection = json.loads((dataset / "pseudoLabelsTr" / "selection.json").read_text())
    assert selection["kept"] == ["cb001"] and selection["dropped"] == ["hcc006"]
    assert selection["instability"]["cb001"] == 0.0 and selection["instability"]["hcc006"] > 0.1
    rows = (dataset / "pseudoLabelsTr" / "selection.csv").read_text().splitlines()
    assert rows[1].startswith("cb001,1,0.0,True") and rows[2].startswith("hcc006,2,")


def test_selection_needs_two_rounds_and_pseudolabel_needs_a_teacher_or_select(dataset, capsys):
    assert main(["pseudolabel", "--dataset", str(dataset), "--select"]) == 1
    assert main(["pseudolabel", "--dataset", str(dataset)]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert "at least two needed" in errors[0] and "give -m TEACHER" in errors[1]
