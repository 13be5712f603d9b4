"""How each FLARE class is described in DICOM outputs: coded concepts and a display colour.

Codes are SNOMED CT concepts from pydicom's code dictionary, picked from the DICOM context groups
for segmentations: CID 7150 (category), CID 7151 (type) and CID 244 (laterality). CID 7151 has no
right or left kidney or adrenal gland, so those are the organ plus a laterality modifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from flareseg.errors import InputError
from flareseg.labels import BACKGROUND, BY_ID


@dataclass(frozen=True)
class ClassCodes:
    """One FLARE class in DICOM.

    Attributes:
        category: Segmented property category (CID 7150).
        type: Segmented property type (CID 7151).
        modifier: Laterality of the type (CID 244), or None.
        rgb: Display colour, 0..255 per channel.
    """

    category: Code
    type: Code
    modifier: Code | None
    rgb: tuple[int, int, int]


_ANATOMY = codes.SCT.AnatomicalStructure

#: FLARE class id -> its DICOM description.
CLASS_CODES: dict[int, ClassCodes] = {
    1: ClassCodes(_ANATOMY, codes.SCT.Liver, None, (177, 82, 56)),
    2: ClassCodes(_ANATOMY, codes.SCT.Kidney, codes.SCT.Right, (204, 146, 64)),
    3: ClassCodes(_ANATOMY, codes.SCT.Spleen, None, (141, 62, 150)),
    4: ClassCodes(_ANATOMY, codes.SCT.Pancreas, None, (236, 196, 92)),
    5: ClassCodes(_ANATOMY, codes.SCT.Aorta, None, (214, 38, 44)),
    6: ClassCodes(_ANATOMY, codes.SCT.InferiorVenaCava, None, (58, 92, 198)),
    7: ClassCodes(_ANATOMY, codes.SCT.AdrenalGland, codes.SCT.Right, (246, 150, 34)),
    8: ClassCodes(_ANATOMY, codes.SCT.AdrenalGland, codes.SCT.Left, (196, 108, 22)),
    9: ClassCodes(_ANATOMY, codes.SCT.Gallbladder, None, (64, 168, 72)),
    10: ClassCodes(_ANATOMY, codes.SCT.Esophagus, None, (226, 146, 162)),
    11: ClassCodes(_ANATOMY, codes.SCT.Stomach, None, (246, 208, 168)),
    12: ClassCodes(_ANATOMY, codes.SCT.Duodenum, None, (198, 166, 118)),
    13: ClassCodes(_ANATOMY, codes.SCT.Kidney, codes.SCT.Left, (158, 116, 48)),
    14: ClassCodes(codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Lesion, None, (250, 238, 30)),
}


def classes_present(labels: np.ndarray) -> list[int]:
    """The FLARE class ids in a label map, ascending.

    Args:
        labels: Integer class ids, any shape.

    Raises:
        InputError: A value is not a FLARE class id, or the map holds no class at all (a DICOM
            output needs at least one segment or structure).
    """
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"mask of type {labels.dtype}; expected integer FLARE class ids")
    values = np.unique(labels)
    unknown = [int(v) for v in values if v != BACKGROUND and int(v) not in CLASS_CODES]
    if unknown:
        raise InputError(f"mask holds value(s) {unknown[:5]} that are not FLARE class ids (1..{max(BY_ID)})")
    present = [int(v) for v in values if v != BACKGROUND]
    if not present:
        raise InputError("mask holds no FLARE class (all background); there is nothing to write as DICOM")
    return present
