"""The volume table holds the published numbers (typed here from the sources' abstracts)."""

from __future__ import annotations

import pytest

from flareseg.labels import BY_NAME
from flareseg.qc.ranges import VOLUME_RANGES_ML, volume_range

#: organ: (low mL, high mL, a fragment of the source that must be cited)
PUBLISHED = {
    "liver": (593.80, 2250.10, "World J Gastroenterol 2017;23(27)"),  # Feng et al.: CTLV range, 369 adults
    "spleen": (107.2, 314.5, "Eur Radiol 1997;7(2)"),  # Prassopoulos et al.: range, 140 adults
    "pancreas": (18.8, 139.8, "Abdom Radiol 2019;44(3)"),  # 204 trauma patients, range
    "right_adrenal_gland": (2.59, 6.56, "Chin Med Sci J 2012;27(4)"),  # Wang et al.: right, range
    "left_adrenal_gland": (2.85, 5.83, "Chin Med Sci J 2012;27(4)"),  # Wang et al.: left, range
    # Kwon et al., Korean J Nephrol 2008: 177 +- 34 mL (men), 146 +- 28 mL (women): 146 - 84, 177 + 102
    "right_kidney": (146 - 3 * 28, 177 + 3 * 34, "Korean J Nephrol 2008;27(6)"),
    "left_kidney": (146 - 3 * 28, 177 + 3 * 34, "Korean J Nephrol 2008;27(6)"),
}


@pytest.mark.parametrize("organ", sorted(PUBLISHED))
def test_range_is_the_published_one(organ):
    low, high, source = PUBLISHED[organ]
    plausible = volume_range(organ)
    assert (plausible.low_ml, plausible.high_ml) == pytest.approx((low, high))
    assert source in plausible.source and plausible.basis


def test_only_organs_with_a_source_have_a_range():
    assert set(VOLUME_RANGES_ML) == set(PUBLISHED)
    assert all(name in BY_NAME for name in VOLUME_RANGES_ML)
    for organ in ("aorta", "inferior_vena_cava", "esophagus", "stomach", "duodenum", "gallbladder", "lesion"):
        assert volume_range(organ) is None
