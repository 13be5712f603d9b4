"""``flareseg dataset import-release``: a FLARE22 or FLARE23 training release as a dataset folder, by links.

The release's files are linked, never copied, into the nnU-Net v2 layout of
:mod:`flareseg.datasets.layout` (``imagesTr/CASE_0000.nii.gz``, ``labelsTr/CASE.nii.gz``,
``imagesUnlabelledTr/CASE_0000.nii.gz``), and ``dataset.json`` is written with the FLARE labels,
``unlabelled`` and, for FLARE23's partial labels, ``annotated_classes`` per case.

Release layouts, as unpacked from the challenges' downloads (folder names matched without
regard to case; ``...`` is any number of files):

``flare22`` (FLARE 2022, semi-supervised: 50 labelled and 2000 unlabelled CTs, 13 organs)::

    [FLARE2022/]Training/FLARE22_LabeledCase50/images/FLARE22_Tr_0001_0000.nii.gz ...
    [FLARE2022/]Training/FLARE22_LabeledCase50/labels/FLARE22_Tr_0001.nii.gz ...
    [FLARE2022/]Training/FLARE22_UnlabeledCase1-1000/Case_00001_0000.nii.gz ...
    [FLARE2022/]Training/FLARE22_UnlabeledCase1001-2000/Case_01001_0000.nii.gz ...

  SRC may be the release folder or its ``Training/``. ``Tuning/``, ``Validation/`` and ``Testing/``
  hold no training data and are not read. Sources: the dataset description of the challenge
  (flare22.grand-challenge.org/Dataset: 50 labelled, 2000 unlabelled training cases); the "File
  Structure" tree of ``resources/FLARE2022.md`` in openmedlab/Awesome-Medical-Dataset; public
  loaders of the release that read ``Training/FLARE22_LabeledCase50/{images,labels}`` and glob
  ``Training/FLARE22_UnlabeledCase*`` (some rename the prefix to ``FLARE_``, also accepted).

``flare23`` (FLARE 2023, partial labels: 2200 partially labelled and 1800 unlabelled CTs, 13
organs and lesion)::

    imagesTr2200/FLARE23_0001_0000.nii.gz ...      (possibly in numbered sub-folders)
    labelsTr2200/FLARE23_0001.nii.gz ...
    unlabeledTr1800/FLARE23_2201_0000.nii.gz ...   (also spelt unlabelTr1800; sub-folders too)
    validation/                                    (not read)

  Sources: codalab.lisn.upsaclay.fr/competitions/12239 (the challenge) and the "File Structure"
  and label statistics of ``resources/FLARE2023.md`` in openmedlab/Awesome-Medical-Dataset;
  conversion scripts of FLARE23 participants, which read ``imagesTr2200``/``labelsTr2200`` and
  spell the unlabelled folder ``unlabelTr1800`` or ``unlabeledTr1800``, with images under
  numbered sub-folders (``1-500/``, ``unlabelTr2201-3100/``): images are therefore searched
  recursively, and an unlabelled image may lack the ``_0000`` channel suffix.

FLARE23 label groups. Each labelled FLARE23 case annotates one of four class sets (the
per-class case counts of the description add up to them: liver, kidneys, spleen and pancreas in
about 1300 cases, the other 8 organs in 250, the lesion in 1497): all 13 organs (the lesion not
annotated); the five organs liver, right kidney, spleen, pancreas, left kidney; those five and
the lesion; the lesion only. The group is inferred from the classes a label map holds: a case
gets the **smallest** of :data:`LABEL_GROUPS` that contains them, so a fully labelled case
missing one organ (outside its field of view) stays ``all_organs``, the organ counting as
background. ``all_classes`` (every class annotated) takes what fits no FLARE23 group.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flareseg import labels
from flareseg.datasets.layout import CHANNEL_SUFFIX, UNLABELLED_FOLDER
from flareseg.errors import InputError

LAYOUTS = ("flare22", "flare23")
ENDING = ".nii.gz"
FIVE_ORGANS = (1, 2, 3, 4, 13)  # liver, right kidney, spleen, pancreas, left kidney

#: FLARE23's label groups, as the FLARE ids each annotates; smallest first (see the module docstring).
LABEL_GROUPS: dict[str, tuple[int, ...]] = {
    "lesion_only": (labels.LESION,),
    "five_organs": FIVE_ORGANS,
    "five_organs_lesion": FIVE_ORGANS + (labels.LESION,),
    "all_organs": labels.ORGAN_IDS,
    "all_classes": labels.ORGAN_IDS + (labels.LESION,),
}
GROUPS_FILE = "label_groups.csv"
_FOLDERS = ("imagesTr", "labelsTr", UNLABELLED_FOLDER)
_FLARE22_LABELLED = re.compile(r"flare(22)?_labell?edcase\d*", re.IGNORECASE)
_FLARE22_UNLABELLED = re.compile(r"flare(22)?_unlabell?edcase.*", re.IGNORECASE)
_FLARE23 = {"images": re.compile(r"imagesTr\d+", re.IGNORECASE), "labels": re.compile(r"labelsTr\d+", re.IGNORECASE),
            "unlabelled": re.compile(r"unlabel(l?ed)?Tr\d+", re.IGNORECASE)}


@dataclass(frozen=True)
class Release:
    """The training files of a release.

    Attributes:
        layout: ``"flare22"`` or ``"flare23"``.
        found: The folders that identify the layout, relative to SRC (e.g. ``imagesTr2200``).
        labelled: Case id to (image, label) paths.
        unlabelled: Case id to image path.
        skipped: Case id to why it was left out (an image without label, a label without image).
    """

    layout: str
    found: tuple[str, ...]
    labelled: dict[str, tuple[Path, Path]]
    unlabelled: dict[str, Path]
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportOptions:
    """How :func:`import_release` runs.

    Attributes:
        layout: ``"auto"`` (detected by folder names), ``"flare22"`` or ``"flare23"``.
        overwrite: Rebuild an existing dataset folder (only links are ever removed from it).
        groups: Case id to group name, overriding the inferred group (FLARE23 only).
        workers: Processes reading label maps; 1 reads in this process, None picks
            :func:`default_workers`.
        progress: Show a progress bar while label maps are read.
    """

    layout: str = "auto"
    overwrite: bool = False
    groups: dict[str, str] = field(default_factory=dict)
    workers: int | None = None
    progress: bool = True


@dataclass
class ImportReport:
    """What :func:`import_release` did; ``groups``, ``present`` and ``overridden`` are empty for FLARE22."""

    source: Path
    out: Path
    release: Release
    detected: bool
    link_kind: str = "symlink"
    groups: dict[str, str] = field(default_factory=dict)
    present: dict[str, tuple[int, ...]] = field(default_factory=dict)
    overridden: set[str] = field(default_factory=set)


def detect_layout(source: Path) -> Release:
    """The release in ``source``, its layout found by folder names.

    Raises:
        InputError: Neither layout's folders are there, or both are.
    """
    found = [release for release in (_find_flare22(source), _find_flare23(source)) if release is not None]
    if len(found) == 1:
        return found[0]
    if found:
        raise InputError(f"{source}: holds both a FLARE22 ({', '.join(found[0].found)}) and a FLARE23 release "
                         f"({', '.join(found[1].found)}); choose one with --layout")
    raise InputError(f"{source}: not a FLARE release: no Training/FLARE22_LabeledCase50/ (flare22) and no "
                     f"imagesTr2200/ with labelsTr2200/ (flare23) in it; point SRC at the unpacked release")


def find_release(source: str | Path, layout: str = "auto") -> Release:
    """The training files of the release in ``source``, in ``layout`` (or detected: ``"auto"``).

    Raises:
        InputError: ``source`` is not a folder, the layout is unknown, or its folders are missing.
    """
    source = Path(source)
    if not source.is_dir():
        raise InputError(f"{source}: no such release folder")
    if layout == "auto":
        return detect_layout(source)
    finders = {"flare22": _find_flare22, "flare23": _find_flare23}
    if layout not in finders:
        raise InputError(f"unknown release layout {layout!r}: choose one of auto, {', '.join(LAYOUTS)}")
    release = finders[layout](source)
    if release is None:
        expected = ("Training/FLARE22_LabeledCase50/images/ and labels/" if layout == "flare22"
                    else "imagesTr2200/ and labelsTr2200/")
        raise InputError(f"{source}: not a {layout} release: no {expected} in it")
    return release


def _subfolders(folder: Path, pattern: re.Pattern) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and pattern.fullmatch(p.name)) if folder.is_dir() else []


def _find_flare22(source: Path) -> Release | None:
    for training in (source / "Training", source):
        labelled = _subfolders(training, _FLARE22_LABELLED)
        if not labelled:
            continue
        folder = labelled[0]
        if not (folder / "images").is_dir() or not (folder / "labels").is_dir():
            raise InputError(f"{folder}: no images/ and labels/ folders in it (unpack images.zip and labels.zip there)")
        unlabelled = _subfolders(training, _FLARE22_UNLABELLED)
        found = tuple(str(p.relative_to(source)) for p in (folder, *unlabelled))
        return _collect("flare22", found, [folder / "images"], [folder / "labels"], unlabelled)
    return None


def _find_flare23(source: Path) -> Release | None:
    folders = {role: _subfolders(source, pattern) for role, pattern in _FLARE23.items()}
    if not folders["images"] or not folders["labels"]:
        return None
    found = tuple(p.name for role in ("images", "labels", "unlabelled") for p in folders[role])
    return _collect("flare23", found, folders["images"], folders["labels"], folders["unlabelled"])


def _case_files(folders: list[Path]) -> dict[str, Path]:
    """Case id to file, for the ``.nii.gz`` files under ``folders`` (searched recursively); the
    channel suffix ``_0000`` is not part of the id."""
    files: dict[str, Path] = {}
    for folder in folders:
        for path in sorted(folder.rglob(f"*{ENDING}")):
            if path.name.startswith("."):
                continue
            case_id = path.name[: -len(ENDING)]
            case_id = case_id[: -len(CHANNEL_SUFFIX)] if case_id.endswith(CHANNEL_SUFFIX) else case_id
            if case_id in files:
                raise InputError(f"case {case_id} found twice: {files[case_id]} and {path}")
            files[case_id] = path
    return files


def _collect(layout: str, found: tuple[str, ...], image_folders: list[Path], label_folders: list[Path],
             unlabelled_folders: list[Path]) -> Release:
    images, label_files = _case_files(image_folders), _case_files(label_folders)
    unlabelled = _case_files(unlabelled_folders)
    skipped = {case_id: f"image without a label in {label_folders[0].name}/"
               for case_id in sorted(set(images) - set(label_files))}
    skipped.update({case_id: f"label without an image in {image_folders[0].name}/"
                    for case_id in sorted(set(label_files) - set(images))})
    both = sorted(set(unlabelled) & set(images))
    if both:
        raise InputError(f"case {both[0]} is both labelled ({images[both[0]]}) and unlabelled ({unlabelled[both[0]]})")
    labelled = {case_id: (images[case_id], label_files[case_id]) for case_id in sorted(set(images) & set(label_files))}
    if not labelled:
        raise InputError(f"{image_folders[0]}: no labelled case (*_0000{ENDING} with its label) "
                         f"in this {layout} release")
    return Release(layout, found, labelled, unlabelled, skipped)


def classes_present(path: str | Path) -> tuple[int, ...]:
    """The classes (non-zero values) of a label map file, ascending.

    Reads with SimpleITK; a uint8 map is counted by marking the values it holds (about twice as
    fast as ``np.unique``, which takes the other types).

    Raises:
        InputError: The file cannot be read, or holds non-integer values.
    """
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputError(f"{path}: cannot read this label map ({str(error).strip().splitlines()[-1]})") from None
    array = sitk.GetArrayViewFromImage(image)  # a view: ``image`` must outlive it
    if array.dtype == np.uint8:
        seen = np.zeros(256, dtype=bool)
        seen[array.reshape(-1)] = True
        values = np.flatnonzero(seen)
    else:
        values = np.unique(array)
        if not np.array_equal(values, np.round(values)):
            raise InputError(f"{path}: label map has non-integer values")
    return tuple(int(v) for v in values if v != 0)


def default_workers(n_labels: int) -> int:
    """Processes for reading ``n_labels`` label maps: up to 8 (one per core) from 32 maps on,
    below that one (starting processes would take longer than reading)."""
    return min(8, os.cpu_count() or 1) if n_labels >= 32 else 1


def _one_thread_per_process() -> None:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def read_classes(paths: dict[str, Path], workers: int | None = None,
                 progress: bool = True) -> dict[str, tuple[int, ...]]:
    """:func:`classes_present` of each case's label map, with a progress bar; ``workers`` > 1
    reads in that many processes (None: :func:`default_workers`)."""
    from tqdm import tqdm

    case_ids = list(paths)
    workers = default_workers(len(case_ids)) if workers is None else workers
    bar = tqdm(total=len(case_ids), desc="reading labels", unit="label", disable=not progress)
    with bar:
        if workers <= 1:
            results = []
            for case_id in case_ids:
                results.append(classes_present(paths[case_id]))
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=_one_thread_per_process) as pool:
                results = []
                for present in pool.map(classes_present, [paths[c] for c in case_ids], chunksize=8):
                    results.append(present)
                    bar.update()
    return dict(zip(case_ids, results))


def smallest_group(present: tuple[int, ...] | set[int]) -> str:
    """The smallest of :data:`LABEL_GROUPS` that contains the classes a label map holds.

    Raises:
        InputError: A class is not a FLARE class (1..14).
    """
    unknown = sorted(set(present) - set(LABEL_GROUPS["all_classes"]) - {0})
    if unknown:
        raise InputError(f"value(s) {unknown} are not FLARE classes (1-14)")
    return min((name for name, ids in LABEL_GROUPS.items() if set(present) - {0} <= set(ids)),
               key=lambda name: len(LABEL_GROUPS[name]))


def assign_groups(present: dict[str, tuple[int, ...]], overrides: dict[str, str]) -> dict[str, str]:
    """Each case's group: its override, or :func:`smallest_group` of its classes.

    Raises:
        InputError: An override names a case that is not a labelled case, an unknown group, or
            a group that leaves out a class the case's label holds.
    """
    groups = {}
    for case_id, classes in present.items():
        try:
            groups[case_id] = smallest_group(classes)
        except InputError as error:
            raise InputError(f"{case_id}: label {error}") from None
    for case_id, group in sorted(overrides.items()):
        if case_id not in present:
            raise InputError(f"group override for {case_id}: no labelled case of that id in the release")
        if group not in LABEL_GROUPS:
            raise InputError(f"group override for {case_id}: unknown group {group!r} "
                             f"(one of {', '.join(LABEL_GROUPS)})")
        missing = sorted(set(present[case_id]) - set(LABEL_GROUPS[group]))
        if missing:
            names = ", ".join(labels.label_name(i) for i in missing)
            raise InputError(f"group override {case_id}={group}: its label holds {names}, "
                             f"which {group} does not annotate")
        groups[case_id] = group
    return groups


def read_group_file(path: str | Path) -> dict[str, str]:
    """Group overrides from a CSV file with ``case`` and ``group`` columns (as :data:`GROUPS_FILE`).

    Raises:
        InputError: The file is missing, unreadable or lacks those columns.
    """
    path = Path(path)
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: cannot read group file ({error})") from None
    if not rows or not {"case", "group"} <= set(rows[0]):
        raise InputError(f"{path}: a group file needs a header line with 'case' and 'group' columns "
                         "and one row per case")
    return {row["case"].strip(): row["group"].strip() for row in rows if row["case"] and row["case"].strip()}


def dataset_json(release: Release, groups: dict[str, str], source: Path) -> dict:
    """``dataset.json`` of an imported release: FLARE numbering (no lesion class for FLARE22)."""
    names = labels.nnunet_labels()
    if release.layout == "flare22":
        names = {name: value for name, value in names.items() if value != labels.LESION}
    spec = {"channel_names": {"0": "CT"}, "labels": names, "numTraining": len(release.labelled),
            "file_ending": ENDING, "name": release.layout.upper(),
            "description": f"{release.layout.upper()} training release at {source}, linked by flareseg dataset "
                           "import-release",
            "unlabelled": sorted(release.unlabelled)}
    annotated = {case_id: list(LABEL_GROUPS[group]) for case_id, group in sorted(groups.items())
                 if group != "all_classes"}
    if annotated:
        spec["annotated_classes"] = annotated
    return spec


def groups_csv(report: ImportReport) -> str:
    """:data:`GROUPS_FILE`: ``case,group,how,classes_present`` (how: ``inferred`` or ``override``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["case", "group", "how", "classes_present"])
    for case_id, group in sorted(report.groups.items()):
        writer.writerow([case_id, group, "override" if case_id in report.overridden else "inferred",
                         " ".join(str(i) for i in report.present[case_id])])
    return out.getvalue()


class _Linker:
    """Makes symbolic links, or hard links where symbolic ones are not allowed; never copies."""

    def __init__(self) -> None:
        self.kind = "symlink"
        self.symlink_error: OSError | None = None

    def link(self, source: Path, target: Path) -> None:
        if self.kind == "symlink":
            try:
                os.symlink(source, target)
                return
            except (FileExistsError, FileNotFoundError):
                raise
            except OSError as error:
                self.symlink_error, self.kind = error, "hardlink"
        try:
            os.link(source, target)
        except OSError as error:
            raise InputError(f"{target}: cannot link to {source}: symbolic links are not allowed here "
                             f"({self.symlink_error.strerror or self.symlink_error}) and a hard link failed "
                             f"({error.strerror or error}); put the dataset on the release's file system or allow "
                             "symbolic links (files are never copied)") from None


def _link_cases(release: Release, staging: Path, linker: _Linker) -> None:
    for folder in _FOLDERS:
        (staging / folder).mkdir(parents=True)
    for case_id, (image, label) in release.labelled.items():
        linker.link(Path(os.path.abspath(image)), staging / "imagesTr" / f"{case_id}{CHANNEL_SUFFIX}{ENDING}")
        linker.link(Path(os.path.abspath(label)), staging / "labelsTr" / f"{case_id}{ENDING}")
    for case_id, image in release.unlabelled.items():
        linker.link(Path(os.path.abspath(image)), staging / UNLABELLED_FOLDER / f"{case_id}{CHANNEL_SUFFIX}{ENDING}")


def _is_link(path: Path) -> bool:
    return path.is_symlink() or (path.is_file() and path.stat().st_nlink > 1)


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty ``out`` without ``overwrite``, and one whose image folders hold anything but links."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise InputError(f"{out}: already exists and is not empty; give --overwrite to rebuild its links and "
                         "dataset.json (files that are not links are never deleted)")
    for folder in _FOLDERS:
        for path in sorted((out / folder).iterdir()) if (out / folder).is_dir() else []:
            if not _is_link(path):
                raise InputError(f"{path}: not a link, and --overwrite replaces only links; move it out of {out} first")


def _replace_folders(staging: Path, out: Path) -> None:
    """Swap ``out``'s image and label folders (links only, checked) for the staged ones."""
    for folder in _FOLDERS:
        old = out / folder
        if old.is_dir():
            for path in old.iterdir():
                path.unlink()
            old.rmdir()
        os.replace(staging / folder, old)


def _write_metadata(folder: Path, report: ImportReport) -> None:
    from flareseg.io.atomic import atomic_write_text

    text = json.dumps(dataset_json(report.release, report.groups, report.source), indent=1)
    text = re.sub(r"\[[\d,\s]+\]", lambda match: json.dumps(json.loads(match.group(0))), text)  # id lists on one line
    atomic_write_text(folder / "dataset.json", text + "\n")
    if report.groups:
        atomic_write_text(folder / GROUPS_FILE, groups_csv(report))


def import_release(source: str | Path, out: str | Path, options: ImportOptions | None = None) -> ImportReport:
    """Link a FLARE training release into a dataset folder and write its ``dataset.json``.

    Labelled cases go to ``imagesTr``/``labelsTr``, unlabelled ones to ``imagesUnlabelledTr``,
    as links to the release's files (symbolic; hard links where symbolic ones are not allowed).
    For FLARE23, every label map is read to infer its case's group (:func:`assign_groups`);
    ``annotated_classes`` lists each group's classes and :data:`GROUPS_FILE` each case's group.
    A new folder is built beside ``out`` and renamed into place; with ``overwrite``, an existing
    one gets new image and label folders and metadata, other files in it staying as they are.

    Raises:
        InputError: Not a release in the given layout, ``out`` not empty (without ``overwrite``),
            a label map unreadable or holding a value that is not a FLARE class, a wrong group
            override, or files that cannot be linked.
    """
    options = options or ImportOptions()
    source, out = Path(source), Path(out).absolute()  # "." has no name to build a sibling folder from
    release = find_release(source, options.layout)
    if options.groups and release.layout != "flare23":
        raise InputError(f"group overrides apply to flare23 releases; this is {release.layout}, whose cases are "
                         "fully labelled")
    _check_out(out, options.overwrite)
    report = ImportReport(source, out, release, detected=options.layout == "auto")
    if release.layout == "flare23":
        report.present = read_classes({c: label for c, (_, label) in release.labelled.items()},
                                      options.workers, options.progress)
        report.groups = assign_groups(report.present, options.groups)
        report.overridden = set(options.groups)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial")
    linker = _Linker()
    try:
        _link_cases(release, staging, linker)
        if out.is_dir() and any(out.iterdir()):
            _replace_folders(staging, out)
            _write_metadata(out, report)
        else:
            _write_metadata(staging, report)
            if out.is_dir():
                out.rmdir()
            os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.link_kind = linker.kind
    return report


def format_report(report: ImportReport) -> str:
    """What an import did, for the terminal: layout, counts, link kind, groups, skipped cases."""
    release = report.release
    how = f"detected by {', '.join(release.found)}" if report.detected else "as given"
    kind = "symbolic links" if report.link_kind == "symlink" else "hard links (symbolic links are not allowed here)"
    lines = [f"layout {release.layout} ({how})",
             f"linked {len(release.labelled)} labelled and {len(release.unlabelled)} unlabelled case(s) into "
             f"{report.out} as {kind}"]
    if report.groups:
        counts = {name: list(report.groups.values()).count(name) for name in LABEL_GROUPS}
        shown = ", ".join(f"{name} {n}" for name, n in counts.items() if n)
        lines.append(f"label groups: {shown} ({len(report.overridden)} set by override, the rest inferred from "
                     f"the classes each label holds); per case in {report.out / GROUPS_FILE}")
    for case_id, why in list(release.skipped.items())[:10]:
        lines.append(f"skipped {case_id}: {why}")
    if len(release.skipped) > 10:
        lines.append(f"... and {len(release.skipped) - 10} more skipped")
    lines.append(f"wrote {report.out / 'dataset.json'}; check it with `flareseg dataset check {report.out}`")
    return "\n".join(lines)
