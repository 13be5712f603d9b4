"""``flareseg dataset import-release``: small FLARE22 and FLARE23 releases made of the real scans, linked
into datasets that load and check clean; FLARE23 label groups; the old layout of unlabelled images."""

from __future__ import annotations

import csv
import json
import os
import shutil
import warnings

import numpy as np
import pytest
import SimpleITK as sitk

from flareseg import labels
from flareseg.cli.main import main
from flareseg.datasets import list_cases, load_spec
from flareseg.datasets import release_import as ri
from flareseg.datasets.check import check_dataset
from flareseg.datasets.layout import UNLABELLED_FOLDER, OldLayoutWarning
from flareseg.errors import InputError
from flareseg.io import read_volume, write_labelmap

FIVE = ri.FIVE_ORGANS


def _link(source, target):
    target.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(source, target)
    return target


@pytest.fixture(scope="session")
def derived(tmp_path_factory, data_dir):
    """Label maps made from the real ones: the full TotalSegmentator labels cut to the five organs;
    the same with a 5-voxel lesion planted in the liver; the first lung tumour mask as lesion 14 on
    a crop of its chest CT (image and label as NIfTI, like the release)."""
    root = tmp_path_factory.mktemp("derived")
    full = read_volume(data_dir / "ts_example" / "flare_labels_fullct_from_v2fast.nii.gz")
    five = np.where(np.isin(full.array, FIVE), full.array, 0).astype(np.uint8)
    write_labelmap(five, full.geometry, root / "five.nii.gz")
    liver = np.argwhere(five == 1)
    z, y, x = liver[len(liver) // 2]
    with_lesion = five.copy()
    for dz, dy, dx in ((0, 0, 0), (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, 0, 1)):
        with_lesion[z + dz, y + dy, x + dx] = 14
    write_labelmap(with_lesion, full.geometry, root / "five_lesion.nii.gz")
    lung = data_dir / "pyradiomics_lung"
    image, mask = sitk.ReadImage(str(lung / "lung1_image.nrrd")), sitk.ReadImage(str(lung / "lung1_label.nrrd"))
    zyx = np.argwhere(sitk.GetArrayFromImage(mask) > 0)
    lo = [max(int(zyx[:, 2 - a].min()) - 6, 0) for a in range(3)]
    hi = [min(int(zyx[:, 2 - a].max()) + 7, image.GetSize()[a]) for a in range(3)]
    crop = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
    sitk.WriteImage(image[crop], str(root / "lung1_ct.nii.gz"))
    sitk.WriteImage(sitk.Cast(mask[crop] > 0, sitk.sitkUInt8) * 14, str(root / "lung1_lesion.nii.gz"))
    return root


@pytest.fixture(scope="session")
def flare22(tmp_path_factory, data_dir):
    """FLARE22's tree: two labelled cases (TotalSegmentator labels), two unlabelled TCIA scans in the
    two unlabelled folders, and a tuning case that is not training data."""
    root = tmp_path_factory.mktemp("FLARE2022")
    ts, labelled = data_dir / "ts_example", root / "Training" / "FLARE22_LabeledCase50"
    _link(ts / "example_ct.nii.gz", labelled / "images" / "FLARE22_Tr_0001_0000.nii.gz")
    _link(ts / "flare_labels_fullct_from_v2fast.nii.gz", labelled / "labels" / "FLARE22_Tr_0001.nii.gz")
    _link(ts / "example_ct_dicom.nii.gz", labelled / "images" / "FLARE22_Tr_0002_0000.nii.gz")
    _link(ts / "flare_labels_dicom_from_v2fast.nii.gz", labelled / "labels" / "FLARE22_Tr_0002.nii.gz")
    _link(data_dir / "tcia_hcc_tace_seg_hcc006" / "ct.nii.gz",
          root / "Training" / "FLARE22_UnlabeledCase1-1000" / "Case_00001_0000.nii.gz")
    _link(data_dir / "tcia_hcc_tace_seg_multiphase" / "hcc005_pre_noncontrast" / "ct.nii.gz",
          root / "Training" / "FLARE22_UnlabeledCase1001-2000" / "Case_01001_0000.nii.gz")
    _link(ts / "example_ct_sm.nii.gz", root / "Tuning" / "images" / "FLARETs_0001_0000.nii.gz")
    return root


@pytest.fixture(scope="session")
def flare23(tmp_path_factory, data_dir, derived):
    """FLARE23's tree, one case per label group: all organs (12 present: the oesophagus is outside
    the field of view), five organs, five organs and a lesion, lesion only; unlabelled scans with
    and without the channel suffix, in sub-folders as some copies of the release have them."""
    root = tmp_path_factory.mktemp("FLARE23")
    ts = data_dir / "ts_example"
    ct, full = ts / "example_ct.nii.gz", ts / "flare_labels_fullct_from_v2fast.nii.gz"
    cases = {"FLARE23_0001": (ct, full), "FLARE23_0002": (ct, derived / "five.nii.gz"),
             "FLARE23_0003": (ct, derived / "five_lesion.nii.gz"),
             "FLARE23_0004": (derived / "lung1_ct.nii.gz", derived / "lung1_lesion.nii.gz")}
    for case_id, (image, label) in cases.items():
        _link(image, root / "imagesTr2200" / "1-500" / f"{case_id}_0000.nii.gz")
        _link(label, root / "labelsTr2200" / f"{case_id}.nii.gz")
    _link(data_dir / "tcia_hcc_tace_seg_hcc006" / "ct.nii.gz", root / "unlabeledTr1800" / "FLARE23_2201_0000.nii.gz")
    _link(data_dir / "tcia_hcc_tace_seg_multiphase" / "hcc007_portalvenous" / "ct.nii.gz",
          root / "unlabeledTr1800" / "unlabelTr2201-3100" / "FLARE23_2202.nii.gz")
    _link(data_dir / "ts_example" / "example_ct_sm.nii.gz", root / "validation" / "FLARE23_Ts_0001_0000.nii.gz")
    return root


def _run(capsys, *argv):
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_flare22_release_becomes_a_dataset_of_links_that_loads_and_checks_clean(flare22, tmp_path, capsys):
    out = tmp_path / "Dataset022_FLARE22"
    code, text, err = _run(capsys, "dataset", "import-release", flare22, "--out", out, "--quiet")
    assert code == 0, err
    assert "layout flare22 (detected by Training/FLARE22_LabeledCase50, Training/FLARE22_UnlabeledCase1-1000" in text
    assert "linked 2 labelled and 2 unlabelled case(s)" in text and "symbolic links" in text
    link = out / "imagesTr" / "FLARE22_Tr_0001_0000.nii.gz"
    assert link.is_symlink()
    assert os.readlink(link) == str(flare22 / "Training" / "FLARE22_LabeledCase50" / "images" / link.name)
    assert os.readlink(out / UNLABELLED_FOLDER / "Case_01001_0000.nii.gz") == str(
        flare22 / "Training" / "FLARE22_UnlabeledCase1001-2000" / "Case_01001_0000.nii.gz")
    spec_json = json.loads((out / "dataset.json").read_text())
    assert spec_json["numTraining"] == 2 and spec_json["unlabelled"] == ["Case_00001", "Case_01001"]
    assert "lesion" not in spec_json["labels"] and len(spec_json["labels"]) == 14  # background and 13 organs
    assert "annotated_classes" not in spec_json and not (out / ri.GROUPS_FILE).exists()
    cases = {c.case_id: c for c in list_cases(load_spec(out))}
    assert sorted(cases) == ["Case_00001", "Case_01001", "FLARE22_Tr_0001", "FLARE22_Tr_0002"]  # no tuning case
    assert cases["Case_00001"].label is None and cases["Case_00001"].image.parent.name == UNLABELLED_FOLDER
    assert not cases["FLARE22_Tr_0001"].partial
    report = check_dataset(out, progress=False)
    assert report.errors == [] and list(report.kinds.values()).count("unlabelled") == 2
    assert _run(capsys, "dataset", "check", out, "--quiet")[0] == 0
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_flare23_groups_come_from_the_label_pattern(flare23, tmp_path, capsys):
    out = tmp_path / "Dataset023_FLARE23"
    code, text, err = _run(capsys, "dataset", "import-release", flare23, "--out", out, "--layout", "flare23")
    assert code == 0, err
    assert "reading labels" in err  # the progress bar
    assert "layout flare23 (as given)" in text
    assert "label groups: lesion_only 1, five_organs 1, five_organs_lesion 1, all_organs 1 (0 set by override" in text
    expected = {"FLARE23_0001": "all_organs", "FLARE23_0002": "five_organs", "FLARE23_0003": "five_organs_lesion",
                "FLARE23_0004": "lesion_only"}
    rows = list(csv.DictReader(open(out / ri.GROUPS_FILE)))
    assert {r["case"]: r["group"] for r in rows} == expected and {r["how"] for r in rows} == {"inferred"}
    assert rows[0]["classes_present"] == "1 2 3 4 5 6 7 8 9 11 12 13"  # no oesophagus, still all organs
    spec = load_spec(out)
    assert spec.annotated_for("FLARE23_0001") == tuple(range(1, 14))  # the lesion not annotated
    assert spec.annotated_for("FLARE23_0002") == (1, 2, 3, 4, 13)
    assert spec.annotated_for("FLARE23_0003") == (1, 2, 3, 4, 13, 14)
    assert spec.annotated_for("FLARE23_0004") == (14,)
    cases = {c.case_id: c for c in list_cases(spec)}
    assert {c for c, case in cases.items() if case.label is None} == {"FLARE23_2201", "FLARE23_2202"}
    assert os.readlink(out / "labelsTr" / "FLARE23_0004.nii.gz") == str(
        flare23 / "labelsTr2200" / "FLARE23_0004.nii.gz")
    assert os.readlink(out / UNLABELLED_FOLDER / "FLARE23_2202_0000.nii.gz") == str(
        flare23 / "unlabeledTr1800" / "unlabelTr2201-3100" / "FLARE23_2202.nii.gz")
    report = check_dataset(out, progress=False)
    assert report.errors == [] and report.kinds["FLARE23_0004"] == "partial"
    assert report.class_cases[14] == 2


def test_smallest_group_containing_the_classes_present():
    assert ri.smallest_group({14}) == "lesion_only"
    assert ri.smallest_group({1, 3}) == "five_organs"  # some of the five: still that group
    assert ri.smallest_group({1, 2, 3, 4, 13, 14}) == "five_organs_lesion"
    assert ri.smallest_group({5}) == "all_organs"  # an organ outside the five
    assert ri.smallest_group(set(range(1, 13))) == "all_organs"
    assert ri.smallest_group({11, 14}) == "all_classes"  # fits no FLARE23 group
    assert ri.smallest_group(set()) == "lesion_only"  # an empty map: smallest group; override it if wrong
    with pytest.raises(InputError, match=r"\[15\] are not FLARE classes"):
        ri.smallest_group({1, 15})


def test_labels_read_in_processes_give_the_same_classes(flare23):
    paths = {path.name: path for path in sorted((flare23 / "labelsTr2200").iterdir())}
    assert ri.read_classes(paths, workers=2, progress=False) == ri.read_classes(paths, workers=1, progress=False)
    assert ri.default_workers(10) == 1 and 1 <= ri.default_workers(2200) <= 8


def test_overrides_replace_inferred_groups_and_are_checked(flare23, tmp_path, capsys):
    groups_file = tmp_path / "groups.csv"
    groups_file.write_text("case,group\nFLARE23_0001,all_classes\nFLARE23_0002,all_organs\n")
    out = tmp_path / "ds"
    code, text, err = _run(capsys, "dataset", "import-release", flare23, "--out", out, "--quiet", "--groups",
                           groups_file, "--group", "FLARE23_0002=five_organs_lesion")
    assert code == 0, err
    assert "(2 set by override" in text
    rows = {r["case"]: r for r in csv.DictReader(open(out / ri.GROUPS_FILE))}
    assert rows["FLARE23_0002"]["group"] == "five_organs_lesion" and rows["FLARE23_0002"]["how"] == "override"
    assert rows["FLARE23_0001"]["group"] == "all_classes" and rows["FLARE23_0003"]["how"] == "inferred"
    spec = load_spec(out)
    assert "FLARE23_0001" not in spec.annotated_classes  # all classes annotated: a full case
    assert spec.annotated_for("FLARE23_0002") == (1, 2, 3, 4, 13, 14)
    assert check_dataset(out, progress=False).errors == []
    # an override that leaves out a class the label holds, or names no case: one line, nothing written
    for bad, message in (("FLARE23_0003=five_organs", "its label holds lesion, which five_organs does not annotate"),
                         ("FLARE23_9999=lesion_only", "FLARE23_9999: no labelled case of that id")):
        code, _, err = _run(capsys, "dataset", "import-release", flare23, "--out", tmp_path / "bad", "--quiet",
                            "--group", bad)
        assert code == 1 and err.count("\n") == 1 and message in err, err
        assert not (tmp_path / "bad").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["dataset", "import-release", str(flare23), "--out", str(tmp_path / "bad"),
              "--group", "FLARE23_0003=some"])
    assert exit_info.value.code == 2 and "unknown group 'some'" in capsys.readouterr().err


def test_auto_detects_each_layout_and_an_unknown_one_is_refused_in_one_line(flare22, flare23, tmp_path, capsys):
    assert ri.find_release(flare22).layout == "flare22"
    assert ri.find_release(flare22 / "Training").layout == "flare22"  # SRC may be Training/ itself
    release = ri.find_release(flare23)
    assert release.layout == "flare23" and release.found == ("imagesTr2200", "labelsTr2200", "unlabeledTr1800")
    with pytest.raises(SystemExit) as exit_info:
        main(["dataset", "import-release", str(flare23), "--out", str(tmp_path / "x"), "--layout", "flare21"])
    lines = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert exit_info.value.code == 2 and len(lines) == 1
    assert "unknown layout 'flare21': choose auto, flare22, flare23" in lines[0]
    for source, layout, message in ((flare23, "flare22", "not a flare22 release"),
                                    (tmp_path, "auto", "not a FLARE release"),
                                    (tmp_path / "missing", "auto", "no such release folder")):
        code, _, err = _run(capsys, "dataset", "import-release", source, "--out", tmp_path / "x", "--layout", layout)
        assert code == 1 and err.count("\n") == 1 and err.startswith("flareseg: error: ") and message in err, err
    with pytest.raises(InputError, match="unknown release layout 'flare24'"):
        ri.find_release(flare23, "flare24")
    with pytest.raises(InputError, match="group overrides apply to flare23 releases"):
        ri.import_release(flare22, tmp_path / "x", ri.ImportOptions(groups={"FLARE22_Tr_0001": "all_organs"}))


def test_rerun_is_refused_unless_overwrite_which_replaces_only_links(flare22, tmp_path, capsys):
    out = tmp_path / "ds"
    assert _run(capsys, "dataset", "import-release", flare22, "--out", out, "--quiet")[0] == 0
    (out / "pseudo_labels").mkdir()  # the user's own files stay
    code, _, err = _run(capsys, "dataset", "import-release", flare22, "--out", out, "--quiet")
    assert code == 1 and "already exists and is not empty; give --overwrite" in err and err.count("\n") == 1
    (out / "imagesTr" / "FLARE22_Tr_0002_0000.nii.gz").unlink()
    assert _run(capsys, "dataset", "import-release", flare22, "--out", out, "--quiet", "--overwrite")[0] == 0
    assert (out / "imagesTr" / "FLARE22_Tr_0002_0000.nii.gz").is_symlink() and (out / "pseudo_labels").is_dir()
    assert check_dataset(out, progress=False).errors == []
    (out / "imagesTr" / "FLARE22_Tr_0001_0000.nii.gz").unlink()
    (out / "imagesTr" / "FLARE22_Tr_0001_0000.nii.gz").write_bytes(b"a real file")
    code, _, err = _run(capsys, "dataset", "import-release", flare22, "--out", out, "--quiet", "--overwrite")
    assert code == 1 and "not a link, and --overwrite replaces only links" in err
    assert (out / "imagesTr" / "FLARE22_Tr_0001_0000.nii.gz").read_bytes() == b"a real file"


@pytest.fixture
def copied_release(tmp_path, data_dir):
    """A FLARE22 tree of real files (hard links cannot reach the read-only shared data)."""
    ts, root = data_dir / "ts_example", tmp_path / "release" / "Training"
    labelled = "FLARE22_LabeledCase50"
    for source, target in ((ts / "example_ct_sm.nii.gz", f"{labelled}/images/FLARE22_Tr_0001_0000.nii.gz"),
                           (ts / "flare_labels_sm_from_v2normal.nii.gz", f"{labelled}/labels/FLARE22_Tr_0001.nii.gz"),
                           (ts / "example_ct_sm.nii.gz", "FLARE22_UnlabeledCase1-1000/Case_00001_0000.nii.gz")):
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / target)
    return root.parent


def test_hard_links_where_symlinks_are_not_allowed_and_never_copies(copied_release, tmp_path, monkeypatch):
    def no_symlinks(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    report = ri.import_release(copied_release, tmp_path / "ds", ri.ImportOptions(progress=False))
    assert report.link_kind == "hardlink"
    assert "hard links (symbolic links are not allowed here)" in ri.format_report(report)
    image = tmp_path / "ds" / "imagesTr" / "FLARE22_Tr_0001_0000.nii.gz"
    source = copied_release / "Training" / "FLARE22_LabeledCase50" / "images" / image.name
    assert not image.is_symlink() and os.path.samefile(image, source)
    assert check_dataset(tmp_path / "ds", progress=False).errors == []

    monkeypatch.setattr(os, "link", no_symlinks)
    with pytest.raises(InputError, match="symbolic links are not allowed here .* and a hard link failed") as error:
        ri.import_release(copied_release, tmp_path / "ds2", ri.ImportOptions(progress=False))
    assert "\n" not in str(error.value) and "never copied" in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "release"]  # no half-built folder


@pytest.fixture
def old_layout(tmp_path, data_dir):
    """flareseg's layout before imagesUnlabelledTr: the unlabelled image in imagesTr, listed in unlabelled."""
    ts, root = data_dir / "ts_example", tmp_path / "Dataset001_Old"
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir(parents=True)
    shutil.copy(ts / "example_ct_sm.nii.gz", root / "imagesTr" / "full_0000.nii.gz")
    shutil.copy(ts / "flare_labels_sm_from_v2normal.nii.gz", root / "labelsTr" / "full.nii.gz")
    shutil.copy(ts / "example_ct_sm.nii.gz", root / "imagesTr" / "scan_0000.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": labels.nnunet_labels(), "numTraining": 2, "file_ending": ".nii.gz",
        "unlabelled": ["scan"]}))
    return root


def test_old_layout_loads_with_one_warning_line_and_migrates(old_layout, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cases = {c.case_id: c for c in list_cases(load_spec(old_layout))}
        load_spec(old_layout)
    old = [w for w in caught if issubclass(w.category, OldLayoutWarning)]
    assert len(old) == 1, [str(w.message) for w in caught]  # once per folder and process
    message = str(old[0].message)
    assert "\n" not in message and f"flareseg dataset migrate {old_layout}" in message
    assert cases["scan"].label is None and cases["scan"].image.parent.name == "imagesTr"
    report = check_dataset(old_layout, progress=False)
    assert report.errors == [] and report.kinds["scan"] == "unlabelled"
    assert [p.message for p in report.problems if p.case_id == "-"] == [message]
    code, text, err = _run(capsys, "dataset", "check", old_layout, "--quiet")
    assert code == 0 and text.count("flareseg dataset migrate") == 1 and err == ""

    code, text, _ = _run(capsys, "dataset", "migrate", old_layout)
    assert code == 0 and f"moved 1 unlabelled image(s) from imagesTr/ to {UNLABELLED_FOLDER}/" in text
    assert (old_layout / UNLABELLED_FOLDER / "scan_0000.nii.gz").is_file()
    assert json.loads((old_layout / "dataset.json").read_text())["numTraining"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cases = {c.case_id: c for c in list_cases(load_spec(old_layout))}
    assert cases["scan"].image.parent.name == UNLABELLED_FOLDER and cases["scan"].label is None
    report = check_dataset(old_layout, progress=False)
    assert report.errors == [] and report.problems == []
    assert "nothing to move" in _run(capsys, "dataset", "migrate", old_layout)[1]


def test_check_reports_a_case_in_both_image_folders_and_a_label_of_an_unlabelled_image(old_layout):
    main(["dataset", "migrate", str(old_layout)])
    shutil.copy(old_layout / "imagesTr" / "full_0000.nii.gz", old_layout / UNLABELLED_FOLDER / "full_0000.nii.gz")
    shutil.copy(old_layout / "labelsTr" / "full.nii.gz", old_layout / "labelsTr" / "scan.nii.gz")
    errors = {p.case_id: p.message for p in check_dataset(old_layout, progress=False).errors}
    assert "image in both imagesTr/ and imagesUnlabelledTr/" in errors["full"]
    assert f"has no image in imagesTr (its image is in {UNLABELLED_FOLDER}/" in errors["scan"]


def test_migrate_keeps_a_relative_link_pointing_at_its_file(old_layout, capsys):
    image = old_layout / "imagesTr" / "scan_0000.nii.gz"
    image.rename(old_layout / "scan_source.nii.gz")
    image.symlink_to("../scan_source.nii.gz")  # relative, from imagesTr/
    code, _, _ = _run(capsys, "dataset", "migrate", old_layout)
    moved = old_layout / UNLABELLED_FOLDER / "scan_0000.nii.gz"
    assert code == 0 and moved.resolve() == (old_layout / "scan_source.nii.gz").resolve()
    assert check_dataset(old_layout, progress=False).errors == []
