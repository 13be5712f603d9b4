"""``flareseg dataset import`` through the CLI entry point: summary, one-line errors, exit codes."""

from __future__ import annotations

import json

import pytest

from flareseg.cli.main import main


@pytest.fixture
def arguments(data_dir, tmp_path):
    folder = data_dir / "dcmqi_ct3slice"
    return ["dataset", "import", str(tmp_path / "ds"), "--case", "liver3", "--ct", str(folder),
            "--structures", str(folder / "liver_seg_dicomseg.dcm")]


def test_import_prints_the_mapping_and_writes_the_case(arguments, tmp_path, capsys):
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert "imported case liver3" in out and "Liver  -> 1 liver, 107,098 voxels" in out
    assert "annotated values: 1" in out
    spec = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert spec["annotated_classes"] == {"liver3": [1]}
    assert (tmp_path / "ds" / "labelsTr" / "liver3.nii.gz").is_file()


def test_existing_case_fails_with_one_line_unless_overwrite(arguments, capsys):
    assert main(arguments) == 0
    capsys.readouterr()
    assert main(arguments) == 1
    err = capsys.readouterr().err
    assert err.startswith("flareseg: error: case 'liver3' already exists") and err.count("\n") == 1
    assert main([*arguments, "--overwrite"]) == 0


def test_bad_map_and_case_id_are_usage_errors(arguments, tmp_path, capsys):
    for extra in (["--map", "Liver=hepar"], ["--case", "../up"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*arguments, *extra])
        assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --map: 'Liver=hepar': 'hepar' is not a flareseg class" in err
    assert "argument --case: case id '../up'" in err
    assert not (tmp_path / "ds").exists()


def test_map_ignore_leaves_out_the_only_structure(arguments, tmp_path, capsys):
    assert main([*arguments, "--map", "liver=ignore"]) == 1
    assert "no structure maps to a flareseg class (structures: 'Liver')" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


def test_a_malformed_structure_set_is_a_one_line_error_and_writes_nothing(data_dir, tmp_path, capsys):
    import pydicom

    source = data_dir / "tcia_pancreatic_ct_cbct_seg_cb001"
    rtstruct = pydicom.dcmread(source / "rtstruct.dcm")
    for roi in rtstruct.ROIContourSequence:
        roi.ContourSequence[0].ContourData = [1.0, 2.0]  # not (x, y, z) triples
    broken = tmp_path / "broken.dcm"
    rtstruct.save_as(broken)
    arguments = ["dataset", "import", str(tmp_path / "ds"), "--case", "cb001", "--ct", str(source / "dicom_ct"),
                 "--structures", str(broken), "--map", "Bowel_sm_planCT=ignore", "--map", "LUNG_L=ignore",
                 "--map", "LUNG_R=ignore", "--map", "ROI=ignore", "--map", "Stomach_duo_planCT=stomach+duodenum"]
    assert main(arguments) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"flareseg: error: {broken}: malformed RTSTRUCT") and err.count("\n") == 1
    assert not (tmp_path / "ds" / "labelsTr").exists() or not any((tmp_path / "ds" / "labelsTr").iterdir())
