"""Plausible adult organ volumes, each with its published source.

A range is the span of volumes a cited CT volumetry study measured in adults without disease of
that organ (liver, spleen, pancreas, adrenal glands: the observed minimum and maximum), or, where
the study gives only means and deviations (kidneys), mean - 3 SD of the smaller sex to mean + 3 SD
of the larger. The numbers are those of the studies' abstracts. Organs without such a source
(aorta, inferior vena cava, oesophagus, stomach, duodenum: the length in a scan depends on the field
of view and the filling; gallbladder: on fasting) have no range and are never flagged for volume.
``docs/qc.md`` lists the same table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VolumeRange:
    """The plausible volume of one organ in an adult.

    Attributes:
        low_ml: Smallest plausible volume, mL.
        high_ml: Largest plausible volume, mL.
        source: The publication the numbers come from (authors, title, journal, DOI).
        basis: What the numbers are in that publication (cohort, statistic).
    """

    low_ml: float
    high_ml: float
    source: str
    basis: str


_KIDNEY = VolumeRange(
    62.0, 279.0,
    "Kwon SH et al., Normal kidney volume and length in Korean adults as measured by multidetector-row "
    "computerized tomography imaging, Korean J Nephrol 2008;27(6):659-665",
    "per kidney, 123 adults with normal renal function (MDCT, 3D reconstruction): 177 +- 34 mL (men), "
    "146 +- 28 mL (women); range = 146 - 3*28 to 177 + 3*34",
)

#: Plausible adult volume by organ name; organs not listed have no published range here.
VOLUME_RANGES_ML: dict[str, VolumeRange] = {
    "liver": VolumeRange(
        593.8, 2250.1,
        "Feng LM et al., New formula for predicting standard liver volume in Chinese adults, "
        "World J Gastroenterol 2017;23(27):4968-4977, doi:10.3748/wjg.v23.i27.4968",
        "CT-estimated total liver volume, 369 adults: 1205.41 +- 257.53 cm3, range 593.80-2250.10 cm3",
    ),
    "spleen": VolumeRange(
        107.2, 314.5,
        "Prassopoulos P et al., Determination of normal splenic volume on computed tomography in relation "
        "to age, gender and body habitus, Eur Radiol 1997;7(2):246-248",
        "CT, 140 adults without splenic disease: mean 214.6 cm3, range 107.2-314.5 cm3",
    ),
    "pancreas": VolumeRange(
        18.8, 139.8,
        "Normal pancreatic volume in adults is influenced by visceral fat, vertebral body width and age, "
        "Abdom Radiol 2019;44(3):958-966, doi:10.1007/s00261-018-1793-8",
        "CT semi-automatic segmentation, 204 trauma patients aged 20-80 without pancreatic disease: "
        "77.9 +- 21.7 cm3, range 18.8-139.8 cm3",
    ),
    "right_kidney": _KIDNEY,
    "left_kidney": _KIDNEY,
    "right_adrenal_gland": VolumeRange(
        2.59, 6.56,
        "Wang X et al., Evaluation of normal adrenal gland volume by 64-slice CT, Chin Med Sci J "
        "2012;27(4):220-224, doi:10.1016/S1001-9294(13)60005-X",
        "64-slice CT, 81 adults, manual outlines at 1.5 mm: right 4.26 +- 0.86 cm3, range 2.59-6.56 cm3",
    ),
    "left_adrenal_gland": VolumeRange(
        2.85, 5.83,
        "Wang X et al., Evaluation of normal adrenal gland volume by 64-slice CT, Chin Med Sci J "
        "2012;27(4):220-224, doi:10.1016/S1001-9294(13)60005-X",
        "64-slice CT, 81 adults, manual outlines at 1.5 mm: left 4.23 +- 0.74 cm3, range 2.85-5.83 cm3",
    ),
}


def volume_range(organ: str) -> VolumeRange | None:
    """The plausible adult volume of an organ (by its :mod:`flareseg.labels` name), or None."""
    return VOLUME_RANGES_ML.get(organ)
