"""The one label registry: FLARE class ids, names, NSD tolerances and organ groups.

Everything that needs a class name, a tolerance or an organ group reads it from here
(CLI choices, evaluation, recipes), so the numbers never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

BACKGROUND = 0
LESION = 14


@dataclass(frozen=True)
class Label:
    """One class of the FLARE label map.

    Attributes:
        id: Voxel value in label maps.
        name: snake_case name used in files and tables.
        nsd_tolerance_mm: Surface tolerance of the normalised surface Dice, in mm.
        organ: True for the 13 organs, False for the lesion class.
    """

    id: int
    name: str
    nsd_tolerance_mm: float
    organ: bool = True


LABELS: tuple[Label, ...] = (
    Label(1, "liver", 5.0),
    Label(2, "right_kidney", 3.0),
    Label(3, "spleen", 3.0),
    Label(4, "pancreas", 5.0),
    Label(5, "aorta", 2.0),
    Label(6, "inferior_vena_cava", 2.0),
    Label(7, "right_adrenal_gland", 2.0),
    Label(8, "left_adrenal_gland", 2.0),
    Label(9, "gallbladder", 2.0),
    Label(10, "esophagus", 3.0),
    Label(11, "stomach", 5.0),
    Label(12, "duodenum", 7.0),
    Label(13, "left_kidney", 3.0),
    Label(LESION, "lesion", 2.0, organ=False),
)

BY_ID: dict[int, Label] = {label.id: label for label in LABELS}
BY_NAME: dict[str, Label] = {label.name: label for label in LABELS}
ORGAN_IDS: tuple[int, ...] = tuple(label.id for label in LABELS if label.organ)

#: Organ groups of the coarse-to-fine method: each group is refined by its own fine network.
ORGAN_GROUPS: dict[str, tuple[int, ...]] = {
    "abdominal_large": (1, 3, 2, 13),  # liver, spleen, right kidney, left kidney
    "gastrointestinal": (11, 4, 12),  # stomach, pancreas, duodenum
    "vessels": (5, 6),  # aorta, inferior vena cava
    "small": (7, 8, 9, 10),  # right adrenal, left adrenal, gallbladder, esophagus
}

#: Tubular organs annotated over a limited axial range: FLARE scores them only on the
#: axial slices where the ground truth has them (see ``flareseg.evaluation.rules``).
Z_RANGE_LIMITED_IDS: tuple[int, ...] = (5, 6, 10)

#: FLARE21 scored liver, kidneys, spleen and pancreas at a 1 mm tolerance.
FLARE21_TOLERANCES_MM: dict[int, float] = {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0}


def label_name(label_id: int) -> str:
    """Name of a class id, or ``label_<id>`` for an id outside the FLARE map."""
    label = BY_ID.get(label_id)
    return label.name if label else f"label_{label_id}"


def nnunet_labels() -> dict[str, int]:
    """The ``labels`` entry of an nnU-Net ``dataset.json`` for the full FLARE map."""
    return {"background": BACKGROUND, **{label.name: label.id for label in LABELS}}


#: Other spellings of each class name, as found in public datasets' ``dataset.json`` files
#: (AMOS, BTCV, WORD, TotalSegmentator, MSD, FLARE). Compared after :func:`normalise_name`,
#: so case and the choice of space, hyphen or underscore do not matter.
ALIASES: dict[str, tuple[str, ...]] = {
    "liver": (),
    "right_kidney": ("kidney_right", "kidney_r", "r_kidney", "rk"),
    "spleen": (),
    "pancreas": (),
    "aorta": (),
    "inferior_vena_cava": ("ivc", "postcava", "vena_cava_inferior", "inf_vena_cava"),
    "right_adrenal_gland": ("adrenal_gland_right", "right_adrenal", "adrenal_right", "r_adrenal_gland", "rag"),
    "left_adrenal_gland": ("adrenal_gland_left", "left_adrenal", "adrenal_left", "l_adrenal_gland", "lag"),
    "gallbladder": ("gall_bladder",),
    "esophagus": ("oesophagus",),
    "stomach": (),
    "duodenum": (),
    "left_kidney": ("kidney_left", "kidney_l", "l_kidney", "lk"),
    "lesion": ("tumour", "tumor", "lesions", "tumours", "tumors", "cancer"),
}


def normalise_name(name: str) -> str:
    """Lower-case ``name`` with each run of spaces, hyphens and underscores made one underscore."""
    return "_".join(name.lower().replace("-", " ").replace("_", " ").split())


def _names_to_labels() -> dict[str, Label]:
    table = {}
    for canonical, aliases in ALIASES.items():
        for spelling in (canonical, *aliases):
            table[normalise_name(spelling)] = BY_NAME[canonical]
    return table


_BY_SPELLING: dict[str, Label] = _names_to_labels()


def class_for_name(name: str) -> Label | None:
    """The FLARE class a label name means (its name or an alias in :data:`ALIASES`), or None."""
    return _BY_SPELLING.get(normalise_name(name))
