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
from flareseg.inference.model import read_recipe
from flareseg.training.pseudo_rounds import PROVENANCE, RoundOptions, class_entropy, pseudolabel_round, round_folder


QUIET = RoundOptions(progress=False)


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
    report = pseudolabel_round(dataset, default_model_dir(), options=QUIET)
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

    # flareseg's extension: the teacher's mean softmax entropy per class it labelled, within
    # [0, log C] for the C channels of the stage that refines the class
    channels = {label: len(stage.labels) + 1 for stage in read_recipe(default_model_dir()).stages[1:]
                for label in stage.labels}
    entropy = {int(c): v for c, v in provenance["cases"]["hcc006"]["entropy"].items()}
    assert set(entropy) == set(np.unique(stored.array)) - {0}
    assert all(0 <= v <= np.log(channels[c]) for c, v in entropy.items()) and max(entropy.values()) > 0
    # the partial case: only the classes the teacher filled in (others, and where it split the contour)
    partial = {int(c) for c in provenance["cases"]["cb001"]["entropy"]}
    assert partial == set(np.unique(filled[~contour])) - {0} | set(np.unique(filled[split]))

    # an interrupted round resumes: only the missing case is redone
    (folder / "cb001.nii.gz").unlink()
    again = pseudolabel_round(dataset, default_model_dir(), options=QUIET)
    assert again.number == 1 and again.done == ["cb001"] and again.kept == ["hcc006"]


def test_another_teacher_starts_the_next_round_and_selection_drops_the_unstable_case(dataset, tmp_path, capsys):
    assert main(["pseudolabel", "--dataset", str(dataset), "-m", str(default_model_dir()), "--quiet"]) == 0
    student = tmp_path / "student"
    shutil.copytree(default_model_dir(), student)
    with open(student / "recipe.yaml", "a") as handle:
        handle.write("# retrained\n")  # another teacher: its recipe file differs
    with pytest.raises(InputError, match="round 1 was written by another teacher"):
        pseudolabel_round(dataset, student, number=1, options=QUIET)
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


def test_class_entropy_is_the_mean_over_each_class_voxels_by_hand():
    labels = np.array([[[0, 1, 1, 2, 2, 2]]], np.uint8)
    entropy = np.array([[[9.0, 0.1, 0.3, 0.0, 0.6, 0.3]]], np.float32)
    assert class_entropy(labels, entropy) == {1: pytest.approx(0.2), 2: pytest.approx(0.3)}
    where = np.array([[[True, True, False, False, False, True]]])
    assert class_entropy(labels, entropy, where) == {1: pytest.approx(0.1), 2: pytest.approx(0.3)}


def test_dask_workers_write_the_same_round_as_one_process(tmp_path, data_dir):
    """Two small real scans and a broken one: in this process, on a local Dask cluster of two
    workers (--workers 2), and on a running cluster (--scheduler)."""
    pytest.importorskip("distributed")
    from distributed import Client

    from flareseg.inference.cohort import ClusterOptions, local_cluster

    root = tmp_path / "Dataset"
    (root / "imagesUnlabelledTr").mkdir(parents=True)
    for name, source in (("sm", "example_ct_sm.nii.gz"), ("full", "example_ct.nii.gz")):
        shutil.copy(data_dir / "ts_example" / source, root / "imagesUnlabelledTr" / f"{name}_0000.nii.gz")
    (root / "imagesUnlabelledTr" / "broken_0000.nii.gz").write_bytes(b"not a scan")
    spec = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1}, "numTraining": 0,
            "file_ending": ".nii.gz", "unlabelled": ["broken", "full", "sm"]}
    (root / "dataset.json").write_text(json.dumps(spec))
    ways = {"here": RoundOptions(progress=False, threads=1), "workers": RoundOptions(progress=False, threads=1, workers=2)}
    with local_cluster(ClusterOptions(workers=1)) as cluster, Client(cluster):
        ways["scheduler"] = RoundOptions(progress=False, threads=1, scheduler=cluster.scheduler_address)
        reports = {way: pseudolabel_round(root, default_model_dir(), root=tmp_path / way, options=options)
                   for way, options in ways.items()}
    for report in reports.values():
        assert sorted(report.done) == ["full", "sm"] and list(report.failed) == ["broken"]
        assert "not a gzip-compressed NIfTI file" in report.failed["broken"]
    one, two, three = (json.loads((report.folder / PROVENANCE).read_text())["cases"] for report in reports.values())
    for entry in (*one.values(), *two.values(), *three.values()):
        del entry["seconds"]
    assert one == two == three and set(one) == {"full", "sm"}
    for case in one:
        first, *others = (read_volume(report.folder / f"{case}.nii.gz") for report in reports.values())
        assert first.array.any()
        for other in others:
            assert first.geometry.matches(other.geometry) and np.array_equal(first.array, other.array)
    assert sorted(path.name for path in reports["workers"].folder.iterdir()) == ["full.nii.gz", PROVENANCE, "sm.nii.gz"]


def test_one_case_left_is_labelled_in_this_process_without_starting_dask(tmp_path, data_dir):
    import subprocess
    import sys

    root = tmp_path / "Dataset"
    (root / "imagesUnlabelledTr").mkdir(parents=True)
    shutil.copy(data_dir / "ts_example" / "example_ct_sm.nii.gz", root / "imagesUnlabelledTr" / "sm_0000.nii.gz")
    spec = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1}, "numTraining": 0,
            "file_ending": ".nii.gz", "unlabelled": ["sm"]}
    (root / "dataset.json").write_text(json.dumps(spec))
    script = ("import sys\nfrom flareseg.cli.main import main\n"
              f"code = main(['pseudolabel', '--dataset', {str(root)!r}, '-m', {str(default_model_dir())!r}, "
              "'--workers', '4', '--threads', '1', '--quiet'])\n"
              "print(code, 'distributed' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["0", "False"], done.stderr
    assert (root / "pseudoLabelsTr" / "round1" / "sm.nii.gz").is_file()
