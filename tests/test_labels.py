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


# Spellings found in public datasets' dataset.json files, with the FLARE id each one means.
SPELLINGS = {
    "Liver": 1, "liver": 1,
    "right_kidney": 2, "kidney_right": 2, "Right Kidney": 2, "right-kidney": 2, "RK": 2, "kidney_r": 2,
    "spleen": 3, "Spleen": 3,
    "pancreas": 4,
    "aorta": 5, "Aorta": 5,
    "inferior_vena_cava": 6, "inferior vena cava": 6, "IVC": 6, "postcava": 6, "vena_cava_inferior": 6,
    "right_adrenal_gland": 7, "adrenal_gland_right": 7, "Right Adrenal Gland": 7, "RAG": 7, "right adrenal": 7,
    "left_adrenal_gland": 8, "adrenal_gland_left": 8, "left-adrenal-gland": 8, "LAG": 8, "left adrenal": 8,
    "gallbladder": 9, "gall_bladder": 9, "Gall Bladder": 9,
    "esophagus": 10, "oesophagus": 10, "Esophagus": 10,
    "stomach": 11,
    "duodenum": 12,
    "left_kidney": 13, "kidney_left": 13, "Left  Kidney": 13, "LK": 13,
    "lesion": 14, "tumour": 14, "tumor": 14, "Tumor": 14, "lesions": 14, "cancer": 14,
}

# Names that are not one FLARE class: another organ, or a structure that could be either side.
NOT_CLASSES = ["background", "bladder", "prostate/uterus", "kidney", "adrenal_gland", "vena_cava", "colon",
               "portal_vein_and_splenic_vein", "ignore", "kidney_cyst", ""]


def test_every_spelling_means_its_class():
    found = {name: getattr(labels.class_for_name(name), "id", None) for name in SPELLINGS}
    assert found == SPELLINGS


def test_names_of_other_structures_are_not_classes():
    assert [labels.class_for_name(name) for name in NOT_CLASSES] == [None] * len(NOT_CLASSES)


def test_alias_table_covers_every_class_and_no_spelling_twice():
    assert list(labels.ALIASES) == [label.name for label in labels.LABELS]
    spellings = [labels.normalise_name(s) for name, aliases in labels.ALIASES.items() for s in (name, *aliases)]
    assert len(spellings) == len(set(spellings))


def test_normalise_name():
    assert labels.normalise_name(" Inferior-Vena  cava_") == "inferior_vena_cava"
