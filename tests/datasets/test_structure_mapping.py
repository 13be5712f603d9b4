"""Structure names to flareseg classes: ``--map`` rules, name matching, and ``dataset.json`` labels."""

from __future__ import annotations

import pytest

from flareseg.datasets import dicom_import as di
from flareseg.datasets import structure_mapping as sm
from flareseg.errors import InputError


def test_parse_map_rule_reads_classes_aliases_merges_and_ignore():
    assert sm.parse_map_rule("Kidney L = Kidney-L") == sm.MapRule("Kidney L", ("left_kidney",))
    assert sm.parse_map_rule("Stomach_duo=duodenum+Stomach") == sm.MapRule("Stomach_duo", ("stomach", "duodenum"))
    assert sm.parse_map_rule("a=b=IVC") == sm.MapRule("a=b", ("inferior_vena_cava",))  # the last '=' splits
    assert sm.parse_map_rule("Couch=Ignore") == sm.MapRule("Couch", ())
    for bad in ("Bowel=small_bowel", "Bowel", "=liver", "Stomach_duo=stomach+"):
        with pytest.raises(InputError):
            sm.parse_map_rule(bad)


def test_resolve_targets_prefers_rules_then_names_then_other_names():
    structures = [sm.StructureInfo(1, ("LIVER",)), sm.StructureInfo(2, ("Segment 2", "Spleen")),
                  sm.StructureInfo(3, ("RK",)), sm.StructureInfo(4, ("Bowel",)), sm.StructureInfo(5, ("Couch",))]
    rules = [sm.parse_map_rule("rk=left_kidney"), sm.parse_map_rule("couch=ignore")]
    assert sm.resolve_targets(structures, rules) == [("liver",), ("spleen",), ("left_kidney",), None, ()]


def test_plan_labels_gives_merged_labels_new_values_and_reuses_declared_ones():
    structures = [sm.StructureInfo(1, ("Stomach_duo",)), sm.StructureInfo(2, ("Liver",))]
    targets = [("stomach", "duodenum"), ("liver",)]
    fresh = sm.plan_labels(structures, targets, di.new_dataset_json())
    assert fresh == {("stomach", "duodenum"): sm.DatasetLabel("Stomach_duo", 15, ("stomach", "duodenum")),
                     ("liver",): sm.DatasetLabel("liver", 1, ("liver",))}
    declared = {**di.new_dataset_json(), "labels": {"background": 0, "GI": 20, "lesion": 14},
                "label_mapping": {"GI": ["duodenum", "stomach"]}}
    assert sm.plan_labels(structures, targets, declared)[("stomach", "duodenum")] == sm.DatasetLabel(
        "GI", 20, ("stomach", "duodenum"))


@pytest.mark.parametrize("labels, mapping, expected", [
    ({"liver": 6, "spleen": 1}, {}, sm.DatasetLabel("liver", 6, ("liver",))),  # AMOS numbering
    ({"hepar": 1}, {"hepar": "liver"}, sm.DatasetLabel("hepar", 1, ("liver",))),
    ({"spleen": 1}, {}, sm.DatasetLabel("liver", 15, ("liver",))),  # 1 is taken: the next free value
])
def test_plan_labels_reuses_a_label_of_the_same_class_or_takes_a_free_value(labels, mapping, expected):
    spec = {**di.new_dataset_json(), "labels": {"background": 0, **labels, "lesion": 14}, "label_mapping": mapping}
    assert sm.plan_labels([sm.StructureInfo(2, ("Liver",))], [("liver",)], spec)[("liver",)] == expected


@pytest.mark.parametrize("labels, mapping, message", [
    ({"Stomach_duo": 15}, {"Stomach_duo": "stomach"}, "'Stomach_duo' means something else"),
    ({"liver": 1}, {"liver": None}, "'liver' means something else"),
])
def test_plan_labels_refuses_clashes_with_dataset_json(labels, mapping, message):
    structures = [sm.StructureInfo(1, ("Stomach_duo",)), sm.StructureInfo(2, ("Liver",))]
    spec = {**di.new_dataset_json(), "labels": {"background": 0, **labels}, "label_mapping": mapping}
    with pytest.raises(InputError, match=message):
        sm.plan_labels(structures, [("stomach", "duodenum"), ("liver",)], spec)


def test_a_map_rule_naming_no_structure_is_an_error():
    structures = [sm.StructureInfo(1, ("Stomach_duo",)), sm.StructureInfo(2, ("Liver",))]
    with pytest.raises(InputError, match="--map names 'Stomack_duo', which is no structure"):
        sm.resolve_targets(structures, [sm.parse_map_rule("Stomack_duo=stomach+duodenum")])
    assert sm.resolve_targets(structures, [sm.parse_map_rule("stomach_duo=ignore")]) == [(), ("liver",)]
