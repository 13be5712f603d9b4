"""One real scan in two numberings (FLARE's and AMOS's): training samples, ``dataset check`` and
evaluation must read both the same, because dataset.json's names say what each value means."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from flareseg import labels
from flareseg.cli.main import main
from flareseg.datasets import list_cases, load_spec
from flareseg.datasets.check import check_dataset, format_report
from flareseg.evaluation.evaluate import evaluate_folders
from flareseg.evaluation.rules import rules_for
from flareseg.io import read_volume, write_labelmap
from flareseg.recipes import load_recipe, recipe_from_dict, recipe_to_dict
from flareseg.training.samples import cache_samples, load_samples

# AMOS's dataset.json labels and, by hand, the AMOS value of each FLARE organ.
AMOS_LABELS = {"background": 0, "spleen": 1, "right_kidney": 2, "left_kidney": 3, "gallbladder": 4, "esophagus": 5,
               "liver": 6, "stomach": 7, "aorta": 8, "postcava": 9, "pancreas": 10, "right_adrenal_gland": 11,
               "left_adrenal_gland": 12, "duodenum": 13, "bladder": 14, "prostate/uterus": 15}
FLARE_TO_AMOS = {1: 6, 2: 2, 3: 1, 4: 10, 5: 8, 6: 9, 7: 11, 8: 12, 9: 4, 10: 5, 11: 7, 12: 13, 13: 3}
BLADDER, PROSTATE = 14, 15
CASE = "case1"


def _dataset(root, ct, label: np.ndarray, geometry, label_names, **extra):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    shutil.copy(ct, root / "imagesTr" / f"{CASE}_0000.nii.gz")
    write_labelmap(label, geometry, root / "labelsTr" / f"{CASE}.nii.gz")
    spec = {"channel_names": {"0": "CT"}, "labels": label_names, "numTraining": 1, "file_ending": ".nii.gz", **extra}
    (root / "dataset.json").write_text(json.dumps(spec, indent=1))
    return root


@pytest.fixture(scope="module")
def two_numberings(tmp_path_factory, data_dir):
    """The abdomen CT with its v1 labels as a FLARE-numbered and an AMOS-numbered dataset.

    The AMOS label map also holds bladder and prostate/uterus voxels (declared ignored), planted
    on background so that, read as background, both maps mean the same.
    """
    ts = data_dir / "ts_example"
    gt = read_volume(ts / "flare_labels_fullct_from_v1normal.nii.gz")
    flare = gt.array.astype(np.uint8)
    renumber = np.zeros(256, np.uint8)
    for flare_id, amos_value in FLARE_TO_AMOS.items():
        renumber[flare_id] = amos_value
    amos = renumber[flare]
    pelvis = np.zeros(flare.shape, bool)
    pelvis[:6] = True  # lowest axial slices (array axis 0 is z)
    amos[pelvis & (flare == 0) & (np.indices(flare.shape)[2] < 60)] = BLADDER
    amos[pelvis & (flare == 0) & (np.indices(flare.shape)[2] >= 60)] = PROSTATE
    root = tmp_path_factory.mktemp("numbering")
    ct = ts / "example_ct.nii.gz"
    return {
        "flare": _dataset(root / "flare", ct, flare, gt.geometry, labels.nnunet_labels()),
        "amos": _dataset(root / "amos", ct, amos, gt.geometry, AMOS_LABELS,
                         label_mapping={"bladder": None, "prostate/uterus": None}),
        "flare_array": flare,
    }


def _tiny_recipe():
    """The coarse-to-fine recipe with three small stages: whole scan, a group crop and per-organ crops."""
    data = recipe_to_dict(load_recipe("coarse_to_fine"))
    data["stages"] = [
        {"name": "coarse", "labels": list(range(1, 14)), "size_zyx": [32, 32, 32], "crop": "whole"},
        {"name": "abdominal_large", "labels": [1, 3, 2, 13], "size_zyx": [32, 32, 32], "crop": "group", "margin_mm": 15},
        {"name": "small", "labels": [7, 8, 9, 10], "size_zyx": [16, 16, 16], "crop": "each", "margin_mm": 15},
    ]
    return recipe_from_dict(data)


def test_training_samples_are_the_same_in_both_numberings(two_numberings, tmp_path):
    recipe = _tiny_recipe()
    samples = {}
    for numbering in ("flare", "amos"):
        cases = list_cases(load_spec(two_numberings[numbering]))
        assert [c.annotated for c in cases] == [tuple(range(1, 15)) if numbering == "flare" else tuple(range(1, 14))]
        folders = cache_samples(cases, recipe, tmp_path / numbering, crops_per_case=1, progress=False)
        samples[numbering] = {name: load_samples(cases, folder) for name, folder in folders.items()}
    for stage in ("coarse", "abdominal_large", "small"):
        flare, amos = samples["flare"][stage], samples["amos"][stage]
        assert len(flare) == len(amos) > 0
        for a, b in zip(flare, amos):
            assert np.array_equal(a.image, b.image) and np.array_equal(a.annotated, b.annotated)
            assert np.array_equal(a.label, b.label)
    # Coarse channels are FLARE ids: the liver (FLARE 1, AMOS 6) fills channel 1, the most voxels.
    coarse = samples["amos"]["coarse"][0].label
    assert np.bincount(coarse.ravel(), minlength=14)[1:].argmax() + 1 == 1
    assert set(np.unique(coarse)) <= set(range(14))


def test_dataset_check_reports_the_same_and_prints_the_mapping(two_numberings):
    raw = read_volume(two_numberings["amos"] / "labelsTr" / f"{CASE}.nii.gz").array
    assert (raw == BLADDER).sum() > 100 and (raw == PROSTATE).sum() > 100  # ignored names are in the map
    flare, amos = (check_dataset(two_numberings[n], progress=False) for n in ("flare", "amos"))
    assert amos.problems == flare.problems == []
    assert amos.kinds == flare.kinds == {CASE: "full"}
    counts = np.bincount(two_numberings["flare_array"].ravel(), minlength=15)
    expected = {i: int(counts[i]) for i in range(1, 15) if counts[i]}
    assert amos.class_voxels == flare.class_voxels == expected
    assert amos.class_cases == flare.class_cases == {i: 1 for i in expected}

    flare_text, amos_text = format_report(flare), format_report(amos)
    for line in ("  spleen=1 -> 3 spleen", "  liver=6 -> 1 liver", "  postcava=9 -> 6 inferior_vena_cava",
                 "  left_kidney=3 -> 13 left_kidney", "  bladder=14 -> ignored (background 0)",
                 "  prostate/uterus=15 -> ignored (background 0)"):
        assert line in amos_text.splitlines()
    assert "  liver=1 -> 1 liver" in flare_text.splitlines()
    organ_rows = [line for line in flare_text.splitlines() if line[:3].strip() in {str(i) for i in range(1, 14)}]
    assert len(organ_rows) == 13 and all(row in amos_text.splitlines() for row in organ_rows)


def test_dataset_check_command_prints_the_mapping_and_writes_it(two_numberings, tmp_path, capsys):
    assert main(["dataset", "check", str(two_numberings["amos"]), "--quiet", "--json", str(tmp_path / "r.json")]) == 0
    assert "  postcava=9 -> 6 inferior_vena_cava" in capsys.readouterr().out.splitlines()
    written = json.loads((tmp_path / "r.json").read_text())
    assert {"name": "spleen", "value": 1, "class_id": 3, "members": []} in written["label_mapping"]


def test_unknown_name_stops_dataset_check_with_one_line(two_numberings, tmp_path, capsys):
    root = tmp_path / "no_mapping"
    shutil.copytree(two_numberings["amos"], root)
    spec = json.loads((root / "dataset.json").read_text())
    del spec["label_mapping"]["bladder"]
    (root / "dataset.json").write_text(json.dumps(spec))
    assert main(["dataset", "check", str(root), "--quiet"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "'bladder' (value 14)" in error and "prostate" not in error


def test_evaluation_scores_both_numberings_the_same(two_numberings, tmp_path, data_dir):
    """Needs ``evaluate_folders`` to translate the ground truth with ``DatasetSpec.to_flare``."""
    pred = tmp_path / "pred"
    pred.mkdir()
    shutil.copy(data_dir / "ts_example" / "flare_labels_fullct_from_v2fast.nii.gz", pred / f"{CASE}.nii.gz")
    rules = rules_for("flare22")
    scores = {
        numbering: {s.class_id: (s.dsc, s.nsd) for s in evaluate_folders(
            pred, two_numberings[numbering] / "labelsTr", rules, dataset_dir=two_numberings[numbering],
            threads=2, progress=False)}
        for numbering in ("flare", "amos")
    }
    plain = {s.class_id: (s.dsc, s.nsd) for s in evaluate_folders(
        pred, two_numberings["flare"] / "labelsTr", rules, threads=2, progress=False)}
    organs = range(1, 14)
    assert {i: scores["amos"][i] for i in organs} == {i: scores["flare"][i] for i in organs}
    assert scores["flare"] == plain
    # The models' own agreement (data README): liver DSC about 0.985, pancreas about 0.81.
    assert scores["amos"][1][0] > 0.97 and 0.7 < scores["amos"][4][0] < 0.9
    # AMOS has no lesion class: where the rules score it, it is not annotated, so NaN.
    assert all(math.isnan(v) for v in scores["amos"].get(labels.LESION, (math.nan,)))
