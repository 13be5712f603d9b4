"""The label registry: ids, FLARE tolerances and organ groups."""

from flareseg import labels


def test_ids_are_1_to_14_with_lesion_last():
    assert [label.id for label in labels.LABELS] == list(range(1, 15))
    assert labels.ORGAN_IDS == tuple(range(1, 14))
    assert not labels.BY_ID[labels.LESION].organ


def test_flare_nsd_tolerances():
    expected = {"liver": 5, "right_kidney": 3, "left_kidney": 3, "spleen": 3, "pancreas": 5, "aorta": 2,
                "inferior_vena_cava": 2, "right_adrenal_gland": 2, "left_adrenal_gland": 2, "gallbladder": 2,
                "esophagus": 3, "stomach": 5, "duodenum": 7, "lesion": 2}
    assert {name: label.nsd_tolerance_mm for name, label in labels.BY_NAME.items()} == expected


def test_organ_groups_cover_every_organ_once():
    grouped = [i for ids in labels.ORGAN_GROUPS.values() for i in ids]
    assert sorted(grouped) == list(labels.ORGAN_IDS)
    assert labels.ORGAN_GROUPS["vessels"] == (5, 6)


def test_nnunet_labels_and_names():
    mapping = labels.nnunet_labels()
    assert mapping["background"] == 0 and mapping["duodenum"] == 12 and len(mapping) == 15
    assert labels.label_name(99) == "label_99"
