"""Datasets in the nnU-Net v2 layout, with FLARE's partial labels and unlabelled cases.

A dataset folder holds::

    dataset.json
    imagesTr/CASE_0000.nii.gz             one CT per labelled case (channel 0000)
    labelsTr/CASE.nii.gz                  its label map, on the image's grid
    imagesUnlabelledTr/CASE_0000.nii.gz   one CT per unlabelled case (flareseg's extension)

nnU-Net v2 wants a label map for every image of ``imagesTr`` and ignores other folders, so
unlabelled images live in ``imagesUnlabelledTr``. Before that folder existed flareseg kept them
in ``imagesTr``, listed in ``unlabelled``: such a dataset still loads, with one
:class:`OldLayoutWarning` per dataset and process naming ``flareseg dataset migrate DIR``
(:func:`migrate_unlabelled`), which moves them.

``dataset.json`` has the nnU-Net keys ``channel_names``, ``labels``, ``numTraining`` and
``file_ending``, plus optional flareseg keys:

``annotated_classes``
    ``{"CASE": [values...]}``: the label values (in the dataset's numbering) that were
    annotated in that case. Voxels of other classes are unlabelled, not background. Cases
    not listed have every class annotated.
``unlabelled``
    ``["CASE", ...]``: cases with an image and no label map (for semi-supervised training).
    Every image of ``imagesUnlabelledTr`` is unlabelled, listed or not.
``label_mapping``
    ``{"NAME": "flareseg class" | null | ["class", "class", ...]}``: what a name of ``labels``
    means when it is not a flareseg class name or alias; null ignores it (its voxels are read
    as background); a list makes it a merged label, "one of these classes" (a contour of
    stomach and duodenum together), which training uses as such and scoring leaves out.

The names in ``labels`` decide what a value means: values are translated to FLARE ids by
name (:mod:`flareseg.datasets.label_mapping`) when cases are read, checked or scored.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flareseg.datasets.label_mapping import LabelMapping, build_mapping, flare_mapping
from flareseg.errors import FlaresegWarning, InputError
from flareseg.labels import BY_ID, ORGAN_IDS

CHANNEL_SUFFIX = "_0000"

#: Folder of the unlabelled cases' images, beside ``imagesTr`` (nnU-Net ignores it).
UNLABELLED_FOLDER = "imagesUnlabelledTr"


class OldLayoutWarning(FlaresegWarning):
    """Unlabelled images stored in ``imagesTr`` (flareseg's layout before ``imagesUnlabelledTr``)."""


_warned_old_layout: set[Path] = set()  # dataset folders already warned about in this process


@dataclass(frozen=True)
class Case:
    """One training case.

    Attributes:
        case_id: Identifier shared by the image and label file names.
        image: Path of the CT (``imagesTr/<case_id>_0000<ending>``).
        label: Path of the label map, or None for an unlabelled case.
        annotated: FLARE ids annotated in this case (background excluded); empty when unlabelled.
        partial: True when only some classes were annotated.
        mapping: How the label's values become FLARE ids (FLARE numbering by default).
    """

    case_id: str
    image: Path
    label: Path | None
    annotated: tuple[int, ...]
    partial: bool = False
    mapping: LabelMapping = field(default_factory=flare_mapping)


#: What a case annotates, as the FLARE23 partial-label methods group their data.
LABEL_PATTERNS = ("all_organs", "some_organs", "organs_lesion", "lesion_only", "unlabelled")


def matches_pattern(case: Case, pattern: str) -> bool:
    """Whether a case belongs to a :data:`LABEL_PATTERNS` group: ``all_organs`` (it annotates the 13
    organs), ``organs_lesion`` (some or all organs, and the lesion), ``some_organs`` (some organs,
    not all, no lesion), ``lesion_only``, ``unlabelled`` (no label map). A case annotating every
    class belongs to both ``all_organs`` and ``organs_lesion``; any other case to one group."""
    if case.label is None or not case.annotated:
        return pattern == "unlabelled"
    organs = {i for i in case.annotated if BY_ID[i].organ}
    lesion = any(not BY_ID[i].organ for i in case.annotated)
    return {"all_organs": organs == set(ORGAN_IDS), "organs_lesion": bool(organs) and lesion,
            "some_organs": bool(organs) and organs != set(ORGAN_IDS) and not lesion,
            "lesion_only": lesion and not organs, "unlabelled": False}[pattern]


def label_pattern(case: Case) -> str:
    """The first :data:`LABEL_PATTERNS` group the case belongs to (:func:`matches_pattern`)."""
    return next(pattern for pattern in LABEL_PATTERNS if matches_pattern(case, pattern))


@dataclass(frozen=True)
class DatasetSpec:
    """The contents of ``dataset.json``.

    Attributes:
        root: The dataset folder.
        labels: Class name to voxel value in the dataset's numbering, background included.
        file_ending: e.g. ``".nii.gz"``.
        num_training: ``numTraining`` as declared.
        annotated_classes: Per-case annotated FLARE ids, for partially labelled cases.
        unlabelled: Case ids declared to have no label map.
        mapping: Dataset value -> FLARE id, found from the names in ``labels``.
    """

    root: Path
    labels: dict[str, int]
    file_ending: str
    num_training: int
    annotated_classes: dict[str, tuple[int, ...]]
    unlabelled: frozenset[str]
    mapping: LabelMapping = field(default_factory=flare_mapping)

    @property
    def class_ids(self) -> tuple[int, ...]:
        """FLARE ids of the dataset's classes, ascending (ignored names left out)."""
        return self.mapping.class_ids

    def annotated_for(self, case_id: str) -> tuple[int, ...]:
        """FLARE ids annotated in a case (all classes unless declared partial)."""
        return self.annotated_classes.get(case_id, self.class_ids)

    def to_flare(self, label: np.ndarray) -> np.ndarray:
        """A label map of this dataset, as FLARE class ids.

        Args:
            label: Label map in the dataset's numbering, any shape (e.g. ``[z, y, x]``).

        Returns:
            uint8 array of the same shape; ignored names become background 0. A uint8 map of a
            dataset in FLARE numbering is returned as it is.

        Raises:
            InputError: The map holds a value not declared in ``labels``.
        """
        return self.mapping.translate(label)


def load_spec(root: str | Path, warn_old_layout: bool = True) -> DatasetSpec:
    """Read and validate ``dataset.json``.

    Args:
        root: The dataset folder.
        warn_old_layout: Warn (:class:`OldLayoutWarning`, once per folder and process) when
            unlabelled images lie in ``imagesTr``; :func:`flareseg.datasets.check.check_dataset`
            reports it instead.

    Raises:
        InputError: The folder or its ``dataset.json`` is missing or malformed.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such dataset folder")
    path = root / "dataset.json"
    if not path.is_file():
        raise InputError(f"{root}: no dataset.json in this folder")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not valid JSON ({error})") from None
    missing = [key for key in ("channel_names", "labels", "file_ending") if not isinstance(raw, dict) or key not in raw]
    if missing:
        raise InputError(f"{path}: missing key(s) {', '.join(missing)}")
    if not isinstance(raw, dict) or not isinstance(raw.get("labels"), dict) or not isinstance(
            raw.get("channel_names"), dict):
        raise InputError(f"{path}: 'channel_names' and 'labels' must be JSON objects")
    if len(raw["channel_names"]) != 1:
        raise InputError(f"{path}: flareseg takes one CT channel, dataset declares {len(raw['channel_names'])}")
    labels = raw["labels"]
    if not all(isinstance(v, int) for v in labels.values()) or labels.get("background") != 0:
        raise InputError(f"{path}: 'labels' must map names to integer ids, with background = 0")
    _check_types(raw, path)
    mapping = build_mapping(labels, raw.get("label_mapping"), str(path))
    spec = DatasetSpec(
        root=root,
        labels=dict(labels),
        file_ending=raw["file_ending"],
        num_training=int(raw.get("numTraining", -1)),
        annotated_classes=_annotated_classes(raw.get("annotated_classes", {}), labels, mapping, path),
        unlabelled=frozenset(raw.get("unlabelled", [])),
        mapping=mapping,
    )
    if warn_old_layout:
        _warn_old_layout(spec)
    return spec


def old_layout_message(spec: DatasetSpec, case_ids: list[str]) -> str:
    """One line: how many unlabelled images lie in ``imagesTr`` and the command that moves them."""
    return (f"{spec.root}: {len(case_ids)} unlabelled image(s) in imagesTr/ (flareseg's old layout; nnU-Net v2 "
            f"wants a label for every image there): move them to {UNLABELLED_FOLDER}/ with "
            f"`flareseg dataset migrate {spec.root}`")


def _warn_old_layout(spec: DatasetSpec) -> None:
    case_ids = old_layout_case_ids(spec)
    key = spec.root.resolve()
    if case_ids and key not in _warned_old_layout:
        _warned_old_layout.add(key)
        warnings.warn(old_layout_message(spec, case_ids), OldLayoutWarning, stacklevel=3)


def _check_types(raw: dict, path: Path) -> None:
    """The other fields of ``dataset.json`` have the JSON types they are read as."""
    def is_int(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    checks = [
        ("file_ending", isinstance(raw["file_ending"], str) and raw["file_ending"].startswith("."),
         'a file ending such as ".nii.gz"'),
        ("numTraining", is_int(raw.get("numTraining", 0)), "a whole number"),
        ("unlabelled", isinstance(raw.get("unlabelled", []), list)
         and all(isinstance(case, str) for case in raw.get("unlabelled", [])), "a list of case ids"),
        ("annotated_classes", isinstance(raw.get("annotated_classes", {}), dict)
         and all(isinstance(ids, list) and all(is_int(i) for i in ids)
                 for ids in raw.get("annotated_classes", {}).values()),
         "an object: case id -> list of label values"),
    ]
    for key, ok, expected in checks:
        if not ok:
            raise InputError(f"{path}: {key!r} must be {expected}, got {json.dumps(raw[key])[:80]}")


def _annotated_classes(declared: dict, labels: dict[str, int], mapping: LabelMapping,
                       path: Path) -> dict[str, tuple[int, ...]]:
    """``annotated_classes`` (dataset values) as FLARE ids, background and ignored names dropped."""
    values = set(labels.values())
    annotated = {}
    for case_id, ids in declared.items():
        unknown = sorted(set(ids) - values)
        if unknown:
            raise InputError(f"{path}: annotated_classes[{case_id!r}] names unknown class ids {unknown}")
        classes = set()
        for value in ids:
            class_id = mapping.class_of(value)
            classes.update(mapping.merged.get(class_id, (class_id,)))
        annotated[case_id] = tuple(sorted(classes - {0}))
    return annotated


def image_case_ids(spec: DatasetSpec) -> list[str]:
    """Case ids of the images in ``imagesTr``, sorted."""
    suffix = CHANNEL_SUFFIX + spec.file_ending
    folder = spec.root / "imagesTr"
    return sorted(p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}")) if folder.is_dir() else []


def label_case_ids(spec: DatasetSpec) -> list[str]:
    """Case ids of the label maps in ``labelsTr``, sorted."""
    folder = spec.root / "labelsTr"
    ending = spec.file_ending
    return sorted(p.name[: -len(ending)] for p in folder.glob(f"*{ending}")) if folder.is_dir() else []


def unlabelled_image_case_ids(spec: DatasetSpec) -> list[str]:
    """Case ids of the images in ``imagesUnlabelledTr``, sorted."""
    suffix = CHANNEL_SUFFIX + spec.file_ending
    folder = spec.root / UNLABELLED_FOLDER
    return sorted(p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}")) if folder.is_dir() else []


def old_layout_case_ids(spec: DatasetSpec) -> list[str]:
    """Cases declared ``unlabelled`` whose image lies in ``imagesTr`` with no label map (the old layout)."""
    return sorted(case_id for case_id in spec.unlabelled
                  if image_path(spec, case_id).is_file() and not label_path(spec, case_id).exists())


def image_path(spec: DatasetSpec, case_id: str) -> Path:
    return spec.root / "imagesTr" / f"{case_id}{CHANNEL_SUFFIX}{spec.file_ending}"


def unlabelled_image_path(spec: DatasetSpec, case_id: str) -> Path:
    return spec.root / UNLABELLED_FOLDER / f"{case_id}{CHANNEL_SUFFIX}{spec.file_ending}"


def label_path(spec: DatasetSpec, case_id: str) -> Path:
    return spec.root / "labelsTr" / f"{case_id}{spec.file_ending}"


def list_cases(spec: DatasetSpec) -> list[Case]:
    """Every case with an image, sorted by id; unlabelled ones have ``label=None``.

    Labelled cases are the images of ``imagesTr`` with a label map; unlabelled ones the images
    of ``imagesUnlabelledTr``, and (old layout) images of ``imagesTr`` declared ``unlabelled``.
    An image of ``imagesTr`` without label map that is not declared unlabelled is left out, and
    an id with an image in both folders is read from ``imagesTr``;
    :func:`flareseg.datasets.check.check_dataset` reports both.
    """
    labelled = set(label_case_ids(spec))
    cases = {}
    for case_id in unlabelled_image_case_ids(spec):
        cases[case_id] = Case(case_id, unlabelled_image_path(spec, case_id), None, ())
    for case_id in image_case_ids(spec):
        if case_id in labelled:
            partial = case_id in spec.annotated_classes
            cases[case_id] = Case(case_id, image_path(spec, case_id), label_path(spec, case_id),
                                  spec.annotated_for(case_id), partial, spec.mapping)
        elif case_id in spec.unlabelled:
            cases[case_id] = Case(case_id, image_path(spec, case_id), None, ())
    return [cases[case_id] for case_id in sorted(cases)]


def migrate_unlabelled(root: str | Path) -> list[str]:
    """Move a dataset to the current layout: unlabelled images from ``imagesTr`` to ``imagesUnlabelledTr``.

    Moves (renames, on the same file system) each image of :func:`old_layout_case_ids`, adds
    the moved ids to ``unlabelled`` and sets ``numTraining`` to the images left in ``imagesTr``
    (``dataset.json`` is rewritten atomically, the other keys kept as they are).

    Returns:
        The moved case ids, sorted (empty when there was nothing to move).

    Raises:
        InputError: ``dataset.json`` is missing or malformed, or an image of the same name is
            already in ``imagesUnlabelledTr``.
    """
    from flareseg.io.atomic import atomic_write_text

    spec = load_spec(root, warn_old_layout=False)
    moved = old_layout_case_ids(spec)
    clashes = [case_id for case_id in moved if unlabelled_image_path(spec, case_id).exists()]
    if clashes:
        raise InputError(f"{spec.root}: {UNLABELLED_FOLDER}/ already holds {clashes[0]}{CHANNEL_SUFFIX}"
                         f"{spec.file_ending}; remove one of the two copies first")
    if not moved:
        return []
    (spec.root / UNLABELLED_FOLDER).mkdir(exist_ok=True)
    for case_id in moved:
        source, target = image_path(spec, case_id), unlabelled_image_path(spec, case_id)
        if source.is_symlink():  # a relative link would point elsewhere from its new folder
            target.symlink_to(source.resolve())
            source.unlink()
        else:
            os.replace(source, target)
    raw = json.loads((spec.root / "dataset.json").read_text())
    raw["unlabelled"] = sorted(set(raw.get("unlabelled", [])) | set(moved))
    raw["numTraining"] = len(image_case_ids(spec))
    atomic_write_text(spec.root / "dataset.json", json.dumps(raw, indent=1) + "\n")
    return moved
