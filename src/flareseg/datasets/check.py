"""``flareseg dataset check``: find what would break training before training starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from flareseg.datasets.label_mapping import LabelMapping
from flareseg.datasets.layout import (
    UNLABELLED_FOLDER,
    DatasetSpec,
    image_case_ids,
    image_path,
    label_case_ids,
    label_path,
    load_spec,
    old_layout_case_ids,
    old_layout_message,
    unlabelled_image_case_ids,
    unlabelled_image_path,
)
from flareseg.errors import FlaresegError, InputError
from flareseg.io import Geometry, read_geometry, read_volume
from flareseg.io.integrity import check_nifti_complete
from flareseg.labels import label_name
from flareseg.preprocessing.orientation import align_to

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One finding. ``severity`` is ``"error"`` (training would fail or learn wrong) or ``"warning"``."""

    case_id: str
    severity: str
    message: str


@dataclass
class DatasetReport:
    """What ``check_dataset`` found.

    Attributes:
        spec: The parsed ``dataset.json``, with its mapping of label values to FLARE ids.
        kinds: Case id to ``"full"``, ``"partial"`` or ``"unlabelled"`` for every usable case.
        problems: Errors and warnings, in case order.
        class_voxels: FLARE id to its voxel count over all labels.
        class_cases: FLARE id to the number of cases that contain it.
        merged_voxels: Name of a merged label (``label_mapping`` list) to its voxel count.
        merged_cases: Name of a merged label to the number of cases that contain it.
    """

    spec: DatasetSpec
    kinds: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    class_voxels: dict[int, int] = field(default_factory=dict)
    class_cases: dict[int, int] = field(default_factory=dict)
    merged_voxels: dict[str, int] = field(default_factory=dict)
    merged_cases: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    def add(self, case_id: str, severity: str, message: str) -> None:
        self.problems.append(Problem(case_id, severity, message))


def check_dataset(root: str | Path, progress: bool = True) -> DatasetReport:
    """Check every case of a dataset folder.

    Checks that each image (of ``imagesTr`` and ``imagesUnlabelledTr``) is a readable 3D image,
    that each label map lies on its image's grid, that label values are declared in
    ``dataset.json`` (and, for partially labelled cases, annotated in that case), and that no
    image of ``imagesTr`` lacks its label unless declared unlabelled (the old layout, reported
    as a warning). Counts voxels and cases per FLARE class, after translating the dataset's
    values by their names (ignored names count as background).

    Raises:
        InputError: The folder or ``dataset.json`` is missing or malformed, or a name in
            ``labels`` is not a flareseg class and not mapped in ``label_mapping``.
    """
    spec = load_spec(root, warn_old_layout=False)
    report = DatasetReport(spec)
    images, labels = image_case_ids(spec), set(label_case_ids(spec))
    unlabelled = unlabelled_image_case_ids(spec)
    if not images:
        report.add("-", ERROR, f"no images matching imagesTr/*_0000{spec.file_ending}")
    _check_folders(spec, images, labels, unlabelled, report)
    todo = [(case_id, False) for case_id in images] + [(case_id, True) for case_id in unlabelled
                                                       if case_id not in images]
    for case_id, in_unlabelled_folder in tqdm(sorted(todo), desc="checking cases", unit="case",
                                              disable=not progress):
        if in_unlabelled_folder:
            _check_unlabelled_image(spec, case_id, report)
        else:
            _check_case(spec, case_id, case_id in labels, report)
    if spec.num_training not in (-1, len(images)):
        report.add("-", WARNING, f"numTraining is {spec.num_training} but imagesTr holds {len(images)} cases")
    return report


def _check_folders(spec: DatasetSpec, images: list[str], labels: set[str], unlabelled: list[str],
                   report: DatasetReport) -> None:
    """What the file names alone show: labels without images, ids in two folders, the old layout."""
    old_layout = old_layout_case_ids(spec)
    if old_layout:
        report.add("-", WARNING, old_layout_message(spec, old_layout))
    for case_id in sorted(labels - set(images)):
        where = (f" (its image is in {UNLABELLED_FOLDER}/, which holds unlabelled cases)"
                 if case_id in unlabelled else "")
        report.add(case_id, ERROR, f"label {label_path(spec, case_id).name} has no image in imagesTr{where}")
    for case_id in sorted(set(images) & set(unlabelled)):
        report.add(case_id, ERROR, f"image in both imagesTr/ and {UNLABELLED_FOLDER}/ (only the imagesTr one is used)")
    for case_id in sorted(set(spec.annotated_classes) - set(images)):
        report.add(case_id, WARNING, "declared in annotated_classes but has no image")
    for case_id in sorted(spec.unlabelled - set(images) - set(unlabelled)):
        report.add(case_id, WARNING, f"declared unlabelled but has no image in {UNLABELLED_FOLDER}/")


def image_geometry(path: Path) -> Geometry:
    """The grid of an image from its header, after checking that a NIfTI file holds all the voxel bytes
    the header announces (cheap: a gzip stream records its length), as training will read them all."""
    geometry = read_geometry(path)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        check_nifti_complete(path)
    return geometry


def _check_unlabelled_image(spec: DatasetSpec, case_id: str, report: DatasetReport) -> None:
    try:
        image_geometry(unlabelled_image_path(spec, case_id))
    except FlaresegError as error:
        report.add(case_id, ERROR, f"image: {error}")
        return
    report.kinds[case_id] = "unlabelled"


def require_clean_dataset(root: str | Path, progress: bool = True) -> DatasetReport:
    """:func:`check_dataset`, refusing a dataset in which it finds an error (warnings pass).

    Raises:
        InputError: One line with the error count and the first error, e.g.
            ``DIR: dataset has 3 error(s); first: case: ...; run `flareseg dataset check DIR` for all``.
    """
    report = check_dataset(root, progress=progress)
    errors = report.errors
    if errors:
        first = errors[0].message if errors[0].case_id == "-" else f"{errors[0].case_id}: {errors[0].message}"
        raise InputError(f"{root}: dataset has {len(errors)} error(s); first: {first}; "
                         f"run `flareseg dataset check {root}` for all")
    return report


def _check_case(spec: DatasetSpec, case_id: str, has_label: bool, report: DatasetReport) -> None:
    try:
        geometry = image_geometry(image_path(spec, case_id))
    except FlaresegError as error:
        report.add(case_id, ERROR, f"image: {error}")
        return
    if not has_label:
        if case_id in spec.unlabelled:
            report.kinds[case_id] = "unlabelled"
        else:
            report.add(case_id, ERROR, f"missing label labelsTr/{case_id}{spec.file_ending} (not declared unlabelled)")
        return
    if case_id in spec.unlabelled:
        report.add(case_id, WARNING, "declared unlabelled but has a label map")
    if _check_label(spec, case_id, geometry, report):
        report.kinds[case_id] = "partial" if case_id in spec.annotated_classes else "full"


def _check_label(spec: DatasetSpec, case_id: str, geometry: Geometry, report: DatasetReport) -> bool:
    """Check one label map against its image; True when it is usable."""
    try:
        label = read_volume(label_path(spec, case_id))
    except FlaresegError as error:
        report.add(case_id, ERROR, f"label: {error}")
        return False
    if not label.geometry.matches(geometry):
        try:
            align_to(label, geometry)
        except FlaresegError:
            report.add(case_id, ERROR, f"label grid does not match its image: {label.geometry.describe()} "
                       f"vs image {geometry.describe()}")
            return False
        report.add(case_id, WARNING, f"label stored as {label.geometry.orientation_code()}, image as "
                   f"{geometry.orientation_code()}: aligned by axis flips/permutation")
    values = label.array
    if not np.issubdtype(values.dtype, np.integer):
        if not np.array_equal(values, np.round(values)):
            report.add(case_id, ERROR, "label map has non-integer values")
            return False
    ids, counts = np.unique(values.astype(np.int64, copy=False), return_counts=True)
    unknown = sorted(set(ids.tolist()) - set(spec.labels.values()))
    if unknown:
        report.add(case_id, ERROR, f"unknown label value(s) {unknown} (not in dataset.json labels)")
        return False
    flare_ids = spec.to_flare(ids).tolist()  # the map's values, translated by name
    annotated = spec.annotated_for(case_id)
    merged = spec.mapping.merged
    not_annotated = [v for v, c in zip(ids.tolist(), flare_ids)
                     if c and not set(merged.get(c, (c,))) <= set(annotated)]
    if not_annotated:
        report.add(case_id, ERROR, f"label value(s) {not_annotated} present but not in annotated_classes")
        return False
    merged_names = {e.class_id: e.name for e in spec.mapping.entries if e.members}
    for class_id, count in zip(flare_ids, counts.tolist()):
        voxels, cases = (report.merged_voxels, report.merged_cases) if class_id in merged else \
            (report.class_voxels, report.class_cases)
        key = merged_names.get(class_id, class_id)
        if class_id:
            voxels[key] = voxels.get(key, 0) + count
            cases[key] = cases.get(key, 0) + 1
    return True


def format_mapping(mapping: LabelMapping) -> list[str]:
    """One line per name of ``labels``: ``dataset name=value -> flareseg class id name``."""
    return ["label mapping (dataset.json name=value -> flareseg class id name):",
            *(f"  {entry.describe()}" for entry in mapping.entries)]


def format_report(report: DatasetReport) -> str:
    """A human-readable summary: case counts, label mapping, per-class table, then problems."""
    kinds = list(report.kinds.values())
    lines = [
        f"dataset {report.spec.root}: {len(kinds)} usable cases "
        f"({kinds.count('full')} fully labelled, {kinds.count('partial')} partially labelled, "
        f"{kinds.count('unlabelled')} unlabelled)",
        "",
        *format_mapping(report.spec.mapping),
        "",
        f"{'id':>3}  {'class':<28} {'cases':>5} {'voxels':>12}",
    ]
    rows = [(str(i), label_name(i), report.class_cases.get(i, 0), report.class_voxels.get(i, 0))
            for i in report.spec.class_ids]
    rows += [("-", f"{e.name} (merged)", report.merged_cases.get(e.name, 0), report.merged_voxels.get(e.name, 0))
             for e in report.spec.mapping.entries if e.members]
    for shown_id, name, cases, voxels in rows:
        lines.append(f"{shown_id:>3}  {name:<28} {cases:>5} {voxels:>12}")
    lines.append("")
    for problem in report.problems:
        lines.append(f"{problem.severity.upper()} {problem.case_id}: {problem.message}")
    n_errors, n_warnings = len(report.errors), len(report.problems) - len(report.errors)
    lines.append(f"{n_errors} error(s), {n_warnings} warning(s)")
    return "\n".join(lines)
