"""The FLARE scoring rules, one rule set per official evaluation script and revision.

The official scripts (JunMa11/FLARE on GitHub) changed after the challenges ran, and
published results used the revisions of their time, so each rule set names the script
and the commit it reproduces:

========================  ==========================================================  =========
rules                     official script @ commit (date)                             NSD = 0
========================  ==========================================================  =========
``flare21``               ``FLARE21/Evaluation/DSC_NSD_eval.py`` @ be3eb6f (2022-06-21)  never
``flare22``               ``FLARE22/Evaluation/FLARE22_DSC_NSD_Eval.py`` @ aad2cc2 (2024-03-29)  DSC < 0.2
``flare22-2022``          the same file @ be3eb6f (2022-06-21, used during FLARE22)      never
``flare23``               ``FLARE23/FLARE23_DSC_NSD_Eval.py`` @ aad2cc2 (2024-03-29)     DSC < 0.2
``flare23-2023``          the same file @ dd7d8c2 (2023-09-21, used during FLARE23)      DSC < 0.1
``flare24-lesion``        ``FLARE24/T1_FLARE24_DSC_NSD_Eval.py`` @ aad2cc2               DSC < 0.2
``flare24-organs``        ``FLARE24/T2andT3_FLARE24_DSC_NSD_Eval.py`` @ aad2cc2          DSC < 0.2
========================  ==========================================================  =========

Shared by all of them: ground truth and prediction both without the class score DSC =
NSD = 1; a prediction of a class the ground truth lacks scores 0/0; distances use the
ground truth's voxel spacing on the grid as stored. They differ in:

* **a ground truth with the class and a prediction without it**: 0/0 by an explicit rule
  (``empty_prediction="zero"``), or, in the scripts without that rule, computed as any other
  case (``"computed"``), which also gives 0/0 except on an empty z-range slab (below);
* **the z-range**: aorta, IVC and oesophagus are scored only on the axial slices
  ``z_min <= z < z_max`` of the ground truth's extent of that class. The scripts slice
  ``[z_min:z_max]``, so the topmost labelled slice is left out, and a class on a single
  slice leaves an empty slab that scores NaN where the score is computed. "Axial" is the
  third NIfTI voxel axis (array axis 0 of flareseg's ``[z, y, x]``);
* **FLARE21** scored liver, kidneys, spleen and pancreas at 1 mm and labelled both kidneys 2:
  the prediction's left kidney (13), which a FLARE21 prediction does not have, is merged into
  2 before scoring, so that flareseg's own maps score as FLARE21 maps do (the script itself
  merges nothing; on FLARE21-numbered files both agree). The ground truth is scored as it is;
* **how voxel values are read**: the scripts cast what nibabel reads (floats) to uint8
  (FLARE22, FLARE24: truncation, then wrap-around modulo 256) or int8 (FLARE23), and the FLARE21
  script compares the prediction's floats as they are (a non-integral value is no class);
  flareseg casts both files the same way (``cast_gt``, ``cast_pred``);
* **FLARE24 task 1** scores one binary lesion mask: any non-zero ground-truth voxel is lesion
  (the script assumes a 0/1 ground truth; on such files both agree); a prediction holding any
  value other than 0 and 1 scores 0/0. ``lesion_class`` names the prediction value to take
  as the lesion (14 in flareseg's own maps) to turn a multi-class map into that binary mask.

A class that was not annotated in a case (partial labels) is not evaluated: NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from flareseg import labels
from flareseg.errors import InputError

REPOSITORY = "JunMa11/FLARE"

_ORGAN_TOLERANCES_MM = {label.id: label.nsd_tolerance_mm for label in labels.LABELS if label.organ}
_ALL_TOLERANCES_MM = {label.id: label.nsd_tolerance_mm for label in labels.LABELS}


@dataclass(frozen=True)
class ScoringRules:
    """Which classes are scored and how, as one official script at one revision.

    Attributes:
        name: The rule set's name (``--rules``).
        script: Path of the official script in the FLARE repository.
        revision: Short commit hash of the script's revision.
        revision_date: Date of that commit, ISO format.
        tolerances_mm: Class id to NSD tolerance in mm; the scored classes.
        nsd_dsc_threshold: NSD is 0 when DSC is below this; None: never.
        empty_prediction: ``"zero"``: a class in the ground truth but not in the prediction
            scores 0/0; ``"computed"``: it is scored like any other case.
        z_range_ids: Classes scored only on the ground truth's axial range.
        prediction_merged_ids: Prediction values merged into another class before scoring.
        cast_gt: How the ground truth's values are read: ``"uint8"``, ``"int8"`` (truncated
            and wrapped, as NumPy casts the floats nibabel reads) or ``"none"`` (as they are;
            a non-integral value matches no class).
        cast_pred: The same for the prediction.
        binary_lesion: Score one binary lesion mask (FLARE24 task 1) as class 14.
        lesion_class: With ``binary_lesion``: the prediction value taken as the lesion
            (None: the file is scored as it is, 1 = lesion).
        class_names: Names that differ from the label registry's under these rules.
    """

    name: str
    script: str
    revision: str
    revision_date: str
    tolerances_mm: dict[int, float] = field(default_factory=lambda: dict(_ORGAN_TOLERANCES_MM))
    nsd_dsc_threshold: float | None = 0.2
    empty_prediction: str = "zero"
    z_range_ids: tuple[int, ...] = labels.Z_RANGE_LIMITED_IDS
    prediction_merged_ids: dict[int, int] = field(default_factory=dict)
    cast_gt: str = "uint8"
    cast_pred: str = "uint8"
    binary_lesion: bool = False
    lesion_class: int | None = None
    class_names: dict[int, str] = field(default_factory=dict)

    @property
    def class_ids(self) -> tuple[int, ...]:
        return tuple(sorted(self.tolerances_mm))

    @property
    def reference(self) -> str:
        """The official script and revision these rules reproduce, in one line."""
        return f"{REPOSITORY} {self.script} @ {self.revision} ({self.revision_date})"

    def class_name(self, class_id: int) -> str:
        return self.class_names.get(class_id) or labels.label_name(class_id)

    def describe(self) -> dict[str, str]:
        """Name, script and revision, for reports."""
        return {"name": self.name, "repository": REPOSITORY, "script": self.script,
                "revision": self.revision, "date": self.revision_date}


_FLARE22 = "FLARE22/Evaluation/FLARE22_DSC_NSD_Eval.py"
_FLARE23 = "FLARE23/FLARE23_DSC_NSD_Eval.py"
_CURRENT, _CURRENT_DATE = "aad2cc2", "2024-03-29"

RULES: dict[str, ScoringRules] = {
    rules.name: rules
    for rules in (
        ScoringRules("flare22", _FLARE22, _CURRENT, _CURRENT_DATE),
        ScoringRules("flare22-2022", _FLARE22, "be3eb6f", "2022-06-21", nsd_dsc_threshold=None,
                     empty_prediction="computed"),
        ScoringRules("flare23", _FLARE23, _CURRENT, _CURRENT_DATE, tolerances_mm=dict(_ALL_TOLERANCES_MM),
                     cast_gt="int8", cast_pred="int8"),
        ScoringRules("flare23-2023", _FLARE23, "dd7d8c2", "2023-09-21", tolerances_mm=dict(_ALL_TOLERANCES_MM),
                     nsd_dsc_threshold=0.1, cast_gt="int8", cast_pred="int8"),
        ScoringRules("flare24-organs", "FLARE24/T2andT3_FLARE24_DSC_NSD_Eval.py", _CURRENT, _CURRENT_DATE),
        ScoringRules("flare24-lesion", "FLARE24/T1_FLARE24_DSC_NSD_Eval.py", _CURRENT, _CURRENT_DATE,
                     tolerances_mm={labels.LESION: 2.0}, z_range_ids=(), binary_lesion=True),
        ScoringRules("flare21", "FLARE21/Evaluation/DSC_NSD_eval.py", "be3eb6f", "2022-06-21",
                     tolerances_mm=dict(labels.FLARE21_TOLERANCES_MM), nsd_dsc_threshold=None,
                     empty_prediction="computed", z_range_ids=(), prediction_merged_ids={13: 2}, cast_pred="none",
                     class_names={2: "kidneys"}),
    )
}

RULE_NAMES: tuple[str, ...] = tuple(RULES)
DEFAULT_RULES = "flare22"


def rules_for(name: str, lesion_class: int | None = None) -> ScoringRules:
    """The rule set of that name; ``lesion_class`` applies to ``flare24-lesion`` only.

    Raises:
        InputError: Unknown name, or a lesion class given to rules that score organs.
    """
    if name not in RULES:
        raise InputError(f"unknown rules {name!r}; choose one of {', '.join(RULE_NAMES)}")
    rules = RULES[name]
    if lesion_class is None:
        return rules
    if not rules.binary_lesion:
        raise InputError(f"a lesion class applies to flare24-lesion only, not to {name}")
    if not 1 <= lesion_class <= 255:
        raise InputError(f"lesion class must be a label value 1..255, not {lesion_class}")
    return replace(rules, lesion_class=lesion_class)
