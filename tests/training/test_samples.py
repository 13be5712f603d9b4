"""Stage samples, with a real merged partial label: the clinical stomach+duodenum contour."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from flareseg.datasets import list_cases, load_spec
from flareseg.recipes import StageConfig, load_recipe
from flareseg.training.samples import cache_samples, load_samples, merged_targets


def _stage(labels):
    return StageConfig(name="s", labels=tuple(labels), size_zyx=(16, 16, 16))


@pytest.mark.parametrize("labels, expected_target, expected_set", [
    # both members in the stage: a set of their two channels (11 and 12 are channels 11 and 12 here)
    (range(1, 14), 14, [c in (11, 12) for c in range(14)]),
    ((11, 4, 12), 4, [False, True, False, True]),
    # one member in the stage: "stomach, or a class of another stage" = stomach or background
    ((1, 11), 3, [True, False, True]),
    # no member: plain background, no set
    ((5, 6), 0, None),
])
def test_merged_targets_by_hand(labels, expected_target, expected_set):
    stage = _stage(labels)
    lookup = np.zeros(256, np.uint8)
    for channel, class_id in enumerate(stage.labels, start=1):
        lookup[class_id] = channel
    sets = merged_targets(stage, tuple(stage.labels), {200: (11, 12)}, lookup)
    assert lookup[200] == expected_target
    if expected_set is None:
        assert sets.shape == (0, len(stage.labels) + 1)
    else:
        assert sets.tolist() == [expected_set]


@pytest.fixture
def tcia_dataset(tmp_path, data_dir):
    """The TCIA case in its own numbering, its stomach+duodenum contour declared as merged."""
    source = data_dir / "tcia_pancreatic_ct_cbct_seg_cb001"
    root = tmp_path / "tcia"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    shutil.copy(source / "ct.nii.gz", root / "imagesTr" / "cb001_0000.nii.gz")
    shutil.copy(source / "label.nii.gz", root / "labelsTr" / "cb001.nii.gz")
    ids = {name: entry["id"] for name, entry in json.loads((source / "labels.json").read_text())["mapping"].items()}
    mapping = {name: None for name in ids}
    mapping["Stomach_duo_planCT"] = ["stomach", "duodenum"]
    spec = {"channel_names": {"0": "CT"}, "labels": {"background": 0, **ids}, "numTraining": 1,
            "file_ending": ".nii.gz", "label_mapping": mapping}
    (root / "dataset.json").write_text(json.dumps(spec))
    return root, ids["Stomach_duo_planCT"]


def test_real_merged_contour_becomes_a_set_target_in_every_stage_it_concerns(tcia_dataset, tmp_path):
    root, contour_value = tcia_dataset
    cases = list_cases(load_spec(root))
    assert [c.annotated for c in cases] == [(11, 12)]
    recipe = load_recipe("coarse_to_fine")
    folders = cache_samples(cases, recipe, tmp_path / "cache", crops_per_case=1, progress=False)
    contour = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "labelsTr" / "cb001.nii.gz"))) == contour_value
    by_stage = {stage.name: (stage, load_samples(cases, folders[stage.name])) for stage in recipe.stages}
    # Only the coarse stage (all organs) and the stage holding stomach and duodenum learn from this case.
    assert {name for name, (_, samples) in by_stage.items() if samples} == {"coarse", "gastrointestinal"}
    for stage, samples in (by_stage["coarse"], by_stage["gastrointestinal"]):
        (sample,) = samples
        channels = len(stage.labels) + 1
        members = [stage.labels.index(11) + 1, stage.labels.index(12) + 1]
        assert sample.sets.tolist() == [[c in members for c in range(channels)]]
        assert set(np.unique(sample.label).tolist()) == {0, channels}  # nothing but background and the set
        assert sample.annotated.tolist() == [c == 0 or c in members for c in range(channels)]
    # The coarse sample (the whole scan resized) holds the contour's share of the volume.
    coarse = by_stage["coarse"][1][0]
    assert np.mean(coarse.label == 14) == pytest.approx(contour.mean(), rel=0.1)


def test_a_three_slice_label_trains_the_fixed_spacing_stages_only(tmp_path, data_dir):
    """The dcmqi liver (3 real CT slices, a DICOM-SEG turned into a label map) becomes a patch
    sample of a stage at a fixed spacing; a stage that resizes would stretch it 20-fold."""
    from flareseg.datasets.layout import Case
    from flareseg.io import read_ct, read_volume, write_labelmap, write_volume
    from flareseg.training.samples import case_samples, read_case

    source = data_dir / "dcmqi_ct3slice"
    ct = read_ct(source)
    image, label = tmp_path / "liver3_0000.nii.gz", tmp_path / "liver3.nii.gz"
    write_volume(ct, image)
    liver = read_volume(source / "liver_seg.nrrd")  # 1 = liver, as FLARE numbers it
    write_labelmap(liver.array, liver.geometry, label)
    case = Case("liver3", image, label, annotated=(1,), partial=True)
    hu, flare_ids, spacing = read_case(case)
    assert hu.shape[0] == 3 and np.count_nonzero(flare_ids == 1) == np.count_nonzero(liver.array == 1)
    recipe = load_recipe("coarse_to_fine")
    rng = np.random.default_rng(0)
    fixed = StageConfig(name="coarse", labels=tuple(range(1, 14)), size_zyx=(16, 32, 32), spacing_mm=(5.0, 5.0, 5.0))
    (sample,) = case_samples(hu, flare_ids, spacing, case, fixed, recipe, rng, 2)
    assert sample.image.shape[0] == 1 and np.count_nonzero(sample.label == 1) > 0
    assert sample.annotated.tolist() == [True, True] + [False] * 12
    for stage in recipe.stages:  # 64^3 and 32^3 resized inputs
        assert case_samples(hu, flare_ids, spacing, case, stage, recipe, rng, 2) == []


def test_a_case_without_the_merged_contour_keeps_its_own_classes():
    """In a dataset that declares a merged stomach+duodenum label, a case drawn with separate
    stomach and duodenum trains them one by one (no set, their own Dice)."""
    from flareseg.datasets.label_mapping import build_mapping
    from flareseg.datasets.layout import Case
    from flareseg.training.samples import case_samples

    mapping = build_mapping({"background": 0, "stomach": 11, "duodenum": 12, "stomach_duodenum": 20},
                            {"stomach_duodenum": ["stomach", "duodenum"]})
    hu = np.zeros((8, 8, 8), np.int16)
    label = np.zeros((8, 8, 8), np.uint8)
    label[:4], label[4:] = 11, 12
    stage = StageConfig(name="gi", labels=(11, 4, 12), size_zyx=(8, 8, 8))
    rng = np.random.default_rng(0)
    case = Case("separate", None, None, (11, 12), True, mapping)
    (sample,) = case_samples(hu, label, (1.0, 1.0, 1.0), case, stage, load_recipe("coarse_to_fine"), rng, 1)
    assert sample.sets.shape == (0, 4) and set(np.unique(sample.label).tolist()) == {1, 3}
    merged = label.copy()
    merged[2:6] = 200  # the same case drawn with the merged contour in the middle
    (sample,) = case_samples(hu, merged, (1.0, 1.0, 1.0), case, stage, load_recipe("coarse_to_fine"), rng, 1)
    assert sample.sets.tolist() == [[False, True, False, True]] and 4 in np.unique(sample.label)
