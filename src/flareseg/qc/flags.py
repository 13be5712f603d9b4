"""Quality-control flags of one mask: a missing organ, an implausible volume, an implausible position.

Flags are findings for a person to look at, not errors. Three kinds of rule, each stated in its
function's docstring: :func:`missing_flags` (an organ absent although the scan covers a level
where anatomy puts it), :func:`volume_flags` (a volume outside the published adult range of
:mod:`flareseg.qc.ranges`) and :func:`order_flags` (left-right and up-down order of organ pairs,
in patient coordinates).
"""

from __future__ import annotations

from dataclasses import dataclass

from flareseg.qc.measures import OrganMeasures, ScanExtent
from flareseg.qc.ranges import volume_range

#: Weight of each kind of flag: a case's score (the sum over its flags) ranks the worst cases, and a
#: case's flags are listed heaviest first.
FLAG_WEIGHTS = {"order": 3, "missing": 2, "volume_large": 1, "volume_small": 1}
#: How far (mm) the scan must reach beyond a witness organ's end before that end counts as seen:
#: a margin for a witness whose segmented end falls a slice or two short of the true one.
COVERAGE_MARGIN_MM = 10.0


@dataclass(frozen=True)
class Flag:
    """One finding.

    Attributes:
        kind: ``missing``, ``volume_small``, ``volume_large`` or ``order``.
        code: Short name, unique within a case: the organ for missing/volume flags, the rule for order.
        organs: The organ(s) it concerns (the rows of ``qc.csv`` that carry it).
        message: One line for a person.
    """

    kind: str
    code: str
    organs: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class Witness:
    """An organ whose presence proves that the scan covers part of another organ's region.

    Attributes:
        organ: The witness organ.
        level: ``top``: the other organ is always present at the level of the witness's top (highest
            S); it counts as covered when the scan reaches :data:`COVERAGE_MARGIN_MM` above it.
            ``whole``: the other organ always overlaps the witness's S range; covered when the
            scan reaches the margin beyond both its ends.
    """

    organ: str
    level: str


#: For each organ, the witnesses that make its absence a finding (anatomy of the adult abdomen: the
#: liver reaches above the upper poles of the right kidney and the spleen and holds the gallbladder;
#: each kidney overlaps the other in height; the spleen lies against the left kidney's upper pole;
#: the pancreas crosses in front of the left kidney; aorta and IVC run past the kidneys (renal
#: vessels); the stomach overlaps the spleen, the duodenum the pancreas; the oesophagus descends
#: past the liver dome and the gastric fundus). Adrenal glands have no rule.
EXPECTED_WITH: dict[str, tuple[Witness, ...]] = {
    "liver": (Witness("right_kidney", "top"), Witness("spleen", "top"), Witness("gallbladder", "whole")),
    "right_kidney": (Witness("left_kidney", "whole"),),
    "left_kidney": (Witness("right_kidney", "whole"),),
    "spleen": (Witness("left_kidney", "top"),),
    "pancreas": (Witness("left_kidney", "whole"),),
    "aorta": (Witness("left_kidney", "whole"), Witness("right_kidney", "whole")),
    "inferior_vena_cava": (Witness("right_kidney", "whole"),),
    "gallbladder": (Witness("liver", "whole"),),
    "esophagus": (Witness("liver", "top"), Witness("stomach", "top")),
    "stomach": (Witness("spleen", "whole"),),
    "duodenum": (Witness("pancreas", "whole"),),
}


def covers(extent: ScanExtent, witness: OrganMeasures, level: str) -> bool:
    """True when the scan reaches :data:`COVERAGE_MARGIN_MM` beyond the witness's top (``top``) or
    beyond both its ends (``whole``); False for an absent witness."""
    if not witness.present:
        return False
    low, high = witness.s_range_mm  # type: ignore[misc]
    above = extent.s_max_mm >= high + COVERAGE_MARGIN_MM
    return above if level == "top" else above and extent.s_min_mm <= low - COVERAGE_MARGIN_MM


def missing_flags(measures: dict[str, OrganMeasures], extent: ScanExtent) -> list[Flag]:
    """Organs absent although the field of view covers their region.

    Rule: organ X is flagged when it has no voxel and some witness W of ``EXPECTED_WITH[X]`` is
    present and covered by the scan's physical S extent (:func:`covers`): e.g. no liver while the
    right kidney was found and the scan reaches 10 mm above the kidney's top. An organ without
    witnesses, or whose witnesses are all absent or cut short, is never flagged missing.
    """
    flags = []
    for organ, witnesses in EXPECTED_WITH.items():
        if organ not in measures or measures[organ].present:
            continue
        seen = [w for w in witnesses if w.organ in measures and covers(extent, measures[w.organ], w.level)]
        if seen:
            because = ", ".join(f"{w.organ} ({'its top' if w.level == 'top' else 'all of it'} in view)"
                                for w in seen)
            flags.append(Flag("missing", organ, (organ,), f"{organ} missing although the scan covers its "
                              f"region: found {because}"))
    return flags


def volume_flags(measures: dict[str, OrganMeasures]) -> list[Flag]:
    """Present organs whose volume is outside their plausible adult range (:mod:`flareseg.qc.ranges`).

    Rule: flagged ``volume_small`` below the range's low end unless the organ touches the scan's
    border (cut by the field of view, so its volume is only a lower bound); ``volume_large`` above
    the high end, cut or not. Organs without a published range are not checked.
    """
    flags = []
    for organ, measure in measures.items():
        plausible = volume_range(organ)
        if plausible is None or not measure.present:
            continue
        if measure.volume_ml < plausible.low_ml and not measure.touches_border:
            flags.append(Flag("volume_small", organ, (organ,), f"{organ} {measure.volume_ml:.1f} mL < "
                              f"{plausible.low_ml:g} mL"))
        elif measure.volume_ml > plausible.high_ml:
            flags.append(Flag("volume_large", organ, (organ,), f"{organ} {measure.volume_ml:.1f} mL > "
                              f"{plausible.high_ml:g} mL"))
    return flags


@dataclass(frozen=True)
class OrderRule:
    """An anatomical order of two organs that holds in (nearly) every adult.

    Attributes:
        code: The rule's name (the flag's ``code``).
        first, second: The two organs.
        relation: ``right_of``: first's centroid lies to the patient's right of second's (smaller L);
            ``above``: first's centroid is higher (larger S) than second's; ``below_top_of``: first's
            centroid is lower than second's top (highest S of its voxels).
    """

    code: str
    first: str
    second: str
    relation: str


#: The order rules checked, each only when both organs are present. Left-right: right kidney, liver
#: and IVC lie to the patient's right of left kidney, spleen and aorta (situs inversus and a
#: left-sided IVC are rare exceptions, and worth a look anyway). Up-down: each kidney's centre lies
#: below the liver's top; the oesophagus's centre lies above the stomach's.
ORDER_RULES: tuple[OrderRule, ...] = (
    OrderRule("kidneys_left_right", "right_kidney", "left_kidney", "right_of"),
    OrderRule("liver_spleen_left_right", "liver", "spleen", "right_of"),
    OrderRule("ivc_aorta_left_right", "inferior_vena_cava", "aorta", "right_of"),
    OrderRule("right_kidney_below_liver_top", "right_kidney", "liver", "below_top_of"),
    OrderRule("left_kidney_below_liver_top", "left_kidney", "liver", "below_top_of"),
    OrderRule("esophagus_above_stomach", "esophagus", "stomach", "above"),
)


def order_violation(rule: OrderRule, first: OrganMeasures, second: OrganMeasures) -> str | None:
    """Why ``rule`` fails for two present organs (one line), or None when it holds."""
    (l1, _, s1), (l2, _, s2) = first.centroid_lps_mm, second.centroid_lps_mm  # type: ignore[misc]
    if rule.relation == "right_of" and l1 >= l2:
        return (f"{rule.first} centre is {l1 - l2:.0f} mm to the patient's left of the {rule.second} centre "
                f"(expected to its right)")
    if rule.relation == "above" and s1 <= s2:
        return f"{rule.first} centre is {s2 - s1:.0f} mm below the {rule.second} centre (expected above)"
    top = second.s_range_mm[1]  # type: ignore[index]
    if rule.relation == "below_top_of" and s1 >= top:
        return f"{rule.first} centre is {s1 - top:.0f} mm above the top of the {rule.second} (expected below)"
    return None


def order_flags(measures: dict[str, OrganMeasures]) -> list[Flag]:
    """Implausible left-right or up-down order of organ pairs (:data:`ORDER_RULES`).

    Rule: for each rule whose two organs are both present, compare their centroids (and, for
    ``below_top_of``, the second organ's top) in patient coordinates (LPS, from the grid's
    direction, so the file's axis order and flips do not matter); a failed comparison is a flag on
    both organs. No margin: a pair in the wrong order by any distance is flagged.
    """
    flags = []
    for rule in ORDER_RULES:
        first, second = measures.get(rule.first), measures.get(rule.second)
        if first is None or second is None or not (first.present and second.present):
            continue
        why = order_violation(rule, first, second)
        if why:
            flags.append(Flag("order", rule.code, (rule.first, rule.second), why))
    return flags


def case_flags(measures: dict[str, OrganMeasures], extent: ScanExtent) -> list[Flag]:
    """All flags of one mask: missing, then volume, then order."""
    return missing_flags(measures, extent) + volume_flags(measures) + order_flags(measures)


def ranked(flags: list[Flag]) -> list[Flag]:
    """Flags heaviest first (:data:`FLAG_WEIGHTS`), keeping their order within a weight."""
    return sorted(flags, key=lambda flag: -FLAG_WEIGHTS[flag.kind])
