"""``flareseg evaluate`` and ``flareseg benchmark`` as a user runs them."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import numpy as np

from flareseg import labels

FLARESEG = [sys.executable, "-m", "flareseg.cli.main"]


def run(*args):
    return subprocess.run([*FLARESEG, *map(str, args)], capture_output=True, text=True, timeout=300)


def _folders(tmp_path, data_dir):
    ts = data_dir / "ts_example"
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    shutil.copy(ts / "flare_labels_fullct_from_v1normal.nii.gz", gt / "case1.nii.gz")
    shutil.copy(ts / "flare_labels_fullct_from_v2fast.nii.gz", pred / "case1.nii.gz")
    shutil.copy(ts / "flare_labels_dicom_from_v2fast.nii.gz", gt / "case2.nii.gz")
    shutil.copy(ts / "flare_labels_dicom_from_v2fast.nii.gz", pred / "case2.nii.gz")
    return gt, pred


def test_evaluate_folders_writes_csv_json_and_table(tmp_path, data_dir):
    gt, pred = _folders(tmp_path, data_dir)
    result = run("evaluate", "--pred", pred, "--gt", gt, "--out", tmp_path / "scores", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "organ mean" in result.stdout and "pancreas" in result.stdout
    # Every report names the rule set and the official script's revision (FLARE22 @ aad2cc2 by default).
    assert "rules flare22: JunMa11/FLARE FLARE22/Evaluation/FLARE22_DSC_NSD_Eval.py @ aad2cc2" in result.stdout
    rows = list(csv.DictReader(open(tmp_path / "scores" / "scores.csv")))
    assert len(rows) == 2 * 13  # the 13 organs of FLARE22
    assert {(r["rules"], r["script_revision"]) for r in rows} == {
        ("flare22", "FLARE22/Evaluation/FLARE22_DSC_NSD_Eval.py@aad2cc2")}
    case2 = [r for r in rows if r["case"] == "case2"]
    assert all(float(r["dsc"]) == 1.0 and float(r["nsd"]) == 1.0 for r in case2)
    summary = json.loads((tmp_path / "scores" / "summary.json").read_text())
    assert summary["cases"] == 2
    assert 0.9 < summary["organ_mean"]["dsc"] < 1.0
    assert summary["classes"]["liver"]["dsc"]["n"] == 2
    assert summary["rules"] == {"name": "flare22", "repository": "JunMa11/FLARE", "revision": "aad2cc2",
                                "script": "FLARE22/Evaluation/FLARE22_DSC_NSD_Eval.py", "date": "2024-03-29"}


def test_evaluate_does_not_import_torch_or_monai(tmp_path, data_dir):
    gt, pred = _folders(tmp_path, data_dir)
    code = ("import sys; from flareseg.cli.main import main; "
            f"main(['evaluate', '--pred', {str(pred)!r}, '--gt', {str(gt)!r}, '--quiet']); "
            "print(sorted(m for m in ('torch', 'monai') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_flare23_scores_the_lesion_outside_the_organ_mean(tmp_path, data_dir):
    gt, pred = _folders(tmp_path, data_dir)
    result = run("evaluate", "--pred", pred, "--gt", gt, "--rules", "flare23", "--out", tmp_path / "s", "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["rules"]["revision"] == "aad2cc2" and "lesion" in summary["classes"]
    organs = [v["dsc"]["mean"] for k, v in summary["classes"].items() if k != "lesion"]
    assert len(organs) == 13 and abs(summary["organ_mean"]["dsc"] - sum(organs) / 13) < 1e-12


def test_lesion_class_with_organ_rules_is_a_one_line_error(tmp_path, data_dir):
    gt, pred = _folders(tmp_path, data_dir)
    result = run("evaluate", "--pred", pred, "--gt", gt, "--lesion-class", "14", "--quiet")
    assert result.returncode == 1
    assert result.stderr.strip() == "flareseg: error: a lesion class applies to flare24-lesion only, not to flare22"


def test_evaluate_with_partial_labels_and_markdown(tmp_path, data_dir):
    gt, pred = _folders(tmp_path, data_dir)
    dataset = tmp_path / "ds"
    dataset.mkdir()
    (dataset / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "file_ending": ".nii.gz", "numTraining": 2,
        "labels": labels.nnunet_labels(),
        "annotated_classes": {"case1": [1, 3]},
    }))
    result = run("evaluate", "--pred", pred, "--gt", gt, "--dataset", dataset, "--format", "markdown", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "| class | DSC | NSD | n |" in result.stdout
    rows = list(csv.DictReader(open(pred / "scores.csv")))
    case1 = {r["class"]: r for r in rows if r["case"] == "case1"}
    assert case1["pancreas"]["dsc"] == "" and case1["pancreas"]["nsd"] == ""
    assert float(case1["liver"]["dsc"]) > 0.9
    summary = json.loads((pred / "summary.json").read_text())
    assert summary["classes"]["pancreas"]["dsc"]["n"] == 1


def test_evaluate_missing_prediction_is_a_one_line_error(tmp_path, data_dir):
    gt, pred = _folders(tmp_path, data_dir)
    (pred / "case2.nii.gz").unlink()
    result = run("evaluate", "--pred", pred, "--gt", gt, "--quiet")
    assert result.returncode == 1
    assert result.stderr.strip() == f"flareseg: error: {pred}: no prediction for 1 case(s): case2"


def test_benchmark_command_per_case(tmp_path, data_dir):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(data_dir / "ts_example" / "example_ct_sm.nii.gz", inputs / "small.nii.gz")
    result = run("benchmark", "--inputs", inputs, "--out", tmp_path / "bench", "--",
                 *FLARESEG, "convert", "-i", "{input}", "-o", "{output}")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "bench" / "predictions" / "small.nii.gz").is_file()
    rows = list(csv.DictReader(open(tmp_path / "bench" / "efficiency.csv")))
    assert rows[0]["case"] == "small" and float(rows[0]["peak_ram_mb"]) > 10
    assert "peak RAM MB" in result.stdout


def test_a_merged_ground_truth_label_leaves_its_members_unscored(tmp_path, data_dir):
    from flareseg.io import read_volume, write_labelmap

    gt, pred = _folders(tmp_path, data_dir)
    reference = read_volume(gt / "case1.nii.gz")
    merged = reference.array.copy()
    merged[np.isin(merged, [11, 12])] = 20  # stomach and duodenum drawn as one contour
    write_labelmap(merged, reference.geometry, gt / "case1.nii.gz")
    dataset = tmp_path / "ds"
    dataset.mkdir()
    (dataset / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "file_ending": ".nii.gz", "numTraining": 2,
        "labels": {**labels.nnunet_labels(), "stomach_duodenum": 20},
        "label_mapping": {"stomach_duodenum": ["stomach", "duodenum"]},
    }))
    assert run("evaluate", "--pred", pred, "--gt", gt, "--dataset", dataset, "--quiet").returncode == 0
    merged_rows = {(r["case"], r["class"]): r for r in csv.DictReader(open(pred / "scores.csv"))}
    shutil.copy(data_dir / "ts_example" / "flare_labels_fullct_from_v1normal.nii.gz", gt / "case1.nii.gz")
    assert run("evaluate", "--pred", pred, "--gt", gt, "--quiet").returncode == 0
    plain_rows = {(r["case"], r["class"]): r for r in csv.DictReader(open(pred / "scores.csv"))}
    for name in ("stomach", "duodenum"):
        assert merged_rows["case1", name]["dsc"] == "" and float(plain_rows["case1", name]["dsc"]) > 0.5
        assert merged_rows["case2", name]["dsc"] == plain_rows["case2", name]["dsc"]  # no merged label there
    for name in ("liver", "pancreas", "spleen"):
        assert merged_rows["case1", name]["dsc"] == plain_rows["case1", name]["dsc"]
