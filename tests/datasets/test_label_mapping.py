"""Label values read by their names: lookup tables, explicit mappings and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flareseg import labels
from flareseg.datasets import load_spec
from flareseg.datasets.label_mapping import MERGED_BASE, UNDECLARED, build_mapping, flare_mapping
from flareseg.errors import InputError

# AMOS's dataset.json labels, written out by hand (AMOS 2022 challenge release).
AMOS_LABELS = {"background": 0, "spleen": 1, "right_kidney": 2, "left_kidney": 3, "gallbladder": 4, "esophagus": 5,
               "liver": 6, "stomach": 7, "aorta": 8, "postcava": 9, "pancreas": 10, "right_adrenal_gland": 11,
               "left_adrenal_gland": 12, "duodenum": 13, "bladder": 14, "prostate/uterus": 15}
# AMOS value -> FLARE id, by hand: spleen is 3 in FLARE, right kidney 2, left kidney 13, ...
AMOS_TO_FLARE = {1: 3, 2: 2, 3: 13, 4: 9, 5: 10, 6: 1, 7: 11, 8: 5, 9: 6, 10: 4, 11: 7, 12: 8, 13: 12, 14: 0, 15: 0}
AMOS_IGNORED = {"bladder": None, "prostate/uterus": None}


def _write_spec(root, label_names, **extra):
    spec = {"channel_names": {"0": "CT"}, "labels": label_names, "numTraining": 1, "file_ending": ".nii.gz", **extra}
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


def test_amos_values_translate_by_name():
    mapping = build_mapping(AMOS_LABELS, AMOS_IGNORED)
    label = np.array([[0, 1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11, 12, 13, 14, 15]], np.int16)
    expected = np.array([[0, 3, 2, 13, 9, 10, 1, 11], [5, 6, 4, 7, 8, 12, 0, 0]], np.uint8)
    out = mapping.translate(label)
    assert out.dtype == np.uint8 and np.array_equal(out, expected)
    assert {v: mapping.class_of(v) for v in range(1, 16)} == AMOS_TO_FLARE
    assert mapping.class_ids == tuple(range(1, 14))
    assert mapping.lookup.shape == (256,) and mapping.lookup[16] == UNDECLARED


def test_flare_numbering_is_the_identity_fast_path():
    mapping = flare_mapping()
    assert mapping.is_identity and mapping.class_ids == tuple(range(1, 15))
    label = np.array([[[0, 1], [13, 14]]], np.uint8)
    assert mapping.translate(label) is label  # not copied
    as_float = mapping.translate(label.astype(np.float64) + 1e-9)
    assert as_float.dtype == np.uint8 and np.array_equal(as_float, label)
    # FLARE spellings other than the registry's names are still FLARE numbering.
    assert build_mapping({"background": 0, "liver": 1, "Right Kidney": 2}).is_identity


def test_a_subset_of_flare_classes_keeps_its_values():
    mapping = build_mapping({"background": 0, "aorta": 5, "liver": 1})
    assert not mapping.is_identity
    assert mapping.translate(np.array([0, 1, 5])).tolist() == [0, 1, 5]
    assert mapping.class_ids == (1, 5)


def test_unknown_name_is_a_one_line_error_naming_it():
    names = {key: value for key, value in AMOS_LABELS.items() if key != "prostate/uterus"}
    with pytest.raises(InputError) as error:
        build_mapping(names, source="ds/dataset.json")
    message = str(error.value)
    assert "\n" not in message and message.startswith("ds/dataset.json: ")
    assert "'bladder' (value 14)" in message and "label_mapping" in message
    assert "spleen" not in message


def test_explicit_mapping_and_ignored_names():
    with pytest.raises(InputError, match="'bladder'"):
        build_mapping({"background": 0, "bladder": 2})
    mapping = build_mapping({"background": 0, "hepar": 1, "bladder": 2, "liver": 3},
                            {"hepar": "Liver", "bladder": None, "liver": None})
    assert [e.describe() for e in mapping.entries] == [
        "hepar=1 -> 1 liver", "bladder=2 -> ignored (background 0)", "liver=3 -> ignored (background 0)"
    ]
    assert mapping.translate(np.array([0, 1, 2, 3], np.uint8)).tolist() == [0, 1, 0, 0]
    assert mapping.class_ids == (1,)


def test_two_names_on_one_class_is_an_error():
    with pytest.raises(InputError, match=r"'IVC' \(value 6\) and 'postcava' \(value 9\) both mean flareseg class 6 "
                                         r"inferior_vena_cava"):
        build_mapping({"background": 0, "IVC": 6, "postcava": 9})
    with pytest.raises(InputError, match="both mean flareseg class 1 liver"):
        build_mapping({"background": 0, "liver": 1, "hepar": 2}, {"hepar": "liver"})


@pytest.mark.parametrize("names, explicit, match", [
    ({"background": 0, "liver": 1}, {"spleen": None}, "label_mapping names 'spleen'"),
    ({"background": 0, "hepar": 1}, {"hepar": "heart"}, "maps 'hepar' to 'heart', which is not a flareseg class"),
    ({"background": 0, "hepar": 1}, ["hepar"], "'label_mapping' must map"),
    ({"background": 0, "liver": 300}, None, r"0..255, got \[300\]"),
    ({"background": 0, "liver": 1, "spleen": 1}, None, r"\[1\] given to more than one name"),
])
def test_malformed_labels_or_mapping(names, explicit, match):
    with pytest.raises(InputError, match=match):
        build_mapping(names, explicit)


def test_undeclared_or_out_of_range_values_are_errors():
    amos = build_mapping(AMOS_LABELS, AMOS_IGNORED)
    with pytest.raises(InputError, match=r"label value\(s\) \[16, 20\] not declared"):
        amos.translate(np.array([1, 16, 20, 16], np.uint8))
    with pytest.raises(InputError, match=r"\[15\] not declared"):
        flare_mapping().translate(np.array([0, 15], np.int32))
    with pytest.raises(InputError, match="outside 0..255"):
        amos.translate(np.array([-1, 2]))


def test_load_spec_translates_annotated_classes_and_keeps_flare_datasets(tmp_path):
    (tmp_path / "amos").mkdir()
    (tmp_path / "flare").mkdir()
    amos = load_spec(_write_spec(tmp_path / "amos", AMOS_LABELS, label_mapping=AMOS_IGNORED,
                                 annotated_classes={"a": [1, 6, 14]}))
    assert amos.annotated_for("a") == (1, 3)  # AMOS spleen (1) and liver (6); bladder (14) ignored
    assert amos.annotated_for("b") == tuple(range(1, 14))
    assert amos.to_flare(np.array([6, 1, 14])).tolist() == [1, 3, 0]
    flare = load_spec(_write_spec(tmp_path / "flare", labels.nnunet_labels(), annotated_classes={"a": [5]}))
    assert flare.annotated_for("a") == (5,) and flare.annotated_for("b") == tuple(range(1, 15))
    label = np.arange(15, dtype=np.uint8)
    assert flare.to_flare(label) is label


def test_load_spec_rejects_an_unknown_name(tmp_path):
    _write_spec(tmp_path, AMOS_LABELS)
    with pytest.raises(InputError, match=r"dataset.json: label\(s\) 'bladder' \(value 14\), 'prostate/uterus'"):
        load_spec(tmp_path)


def test_a_list_declares_a_merged_label_standing_for_its_members(tmp_path):
    names = {"background": 0, "Stomach_duo_planCT": 1, "LUNG_L": 2, "liver": 3}
    mapping = build_mapping(names, {"Stomach_duo_planCT": ["stomach", "Duodenum"], "LUNG_L": None})
    stomach, duodenum = labels.BY_NAME["stomach"].id, labels.BY_NAME["duodenum"].id  # 11, 12
    assert mapping.merged == {MERGED_BASE: (stomach, duodenum)}
    assert mapping.class_ids == (1, 11, 12)  # the members are labelled, as one contour
    assert mapping.entries[0].describe() == "Stomach_duo_planCT=1 -> one of 11 stomach, 12 duodenum"
    assert mapping.translate(np.array([0, 1, 2, 3], np.int16)).tolist() == [0, MERGED_BASE, 0, 1]
    # annotated_classes naming the merged value annotates its members
    _write_spec(tmp_path, names, label_mapping={"Stomach_duo_planCT": ["stomach", "duodenum"], "LUNG_L": None},
                annotated_classes={"case": [1]})
    assert load_spec(tmp_path).annotated_for("case") == (11, 12)


@pytest.mark.parametrize("explicit, match", [
    ({"merged": ["stomach"]}, "two or more different classes"),
    ({"merged": ["stomach", "stomach"]}, "two or more different classes"),
    ({"merged": ["stomach", "bowel"]}, "'bowel', which is not a flareseg class"),
    ({"merged": ["stomach", 12]}, "12, which is not a flareseg class"),
])
def test_malformed_merged_labels(explicit, match):
    with pytest.raises(InputError, match=match):
        build_mapping({"background": 0, "merged": 1}, explicit)


def test_two_merged_names_for_one_set_is_an_error_but_a_member_may_have_its_own_name():
    with pytest.raises(InputError, match="both mean one of"):
        build_mapping({"background": 0, "a": 1, "b": 2}, {"a": ["stomach", "duodenum"], "b": ["duodenum", "stomach"]})
    mapping = build_mapping({"background": 0, "a": 1, "stomach": 2}, {"a": ["stomach", "duodenum"]})
    assert mapping.translate(np.array([1, 2])).tolist() == [MERGED_BASE, 11]


def test_more_merged_labels_than_codes_is_a_one_line_error():
    names = {"background": 0, **{f"m{i}": i + 1 for i in range(56)}}
    explicit = {f"m{i}": ["stomach", labels.BY_ID[1 + i % 10].name] for i in range(56)}
    with pytest.raises(InputError, match="at most 55 merged labels"):
        build_mapping(names, explicit)
