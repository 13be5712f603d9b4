"""``flareseg dataset check|import|import-release|migrate``: verify a dataset folder in the nnU-Net v2 layout,
add DICOM cases, link a FLARE release into one, move unlabelled images to their own folder.

``import-release`` is its own action rather than another form of ``import``: ``import DATASET --case ...``
names the destination first and adds one case, while a release import names its source first and
builds a whole folder; one positional argument meaning either, and ``--overwrite`` meaning "replace
this case" or "rebuild the folder's links", would make both forms' help and errors unclear.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from flareseg.cli.arguments import positive_int


def add_parsers(subparsers) -> None:
    dataset = subparsers.add_parser("dataset", help="work with training datasets (nnU-Net v2 layout)")
    actions = dataset.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="verify images, labels, grids and label values of a dataset folder",
        description="Check a dataset folder (dataset.json, imagesTr/, labelsTr/): readable 3D images, labels on "
        "their image's grid, label values declared in dataset.json, no missing labels. Label values are read "
        "by their names in dataset.json; prints the mapping to flareseg classes it used and a per-class "
        "summary; exits 1 when it finds errors.",
    )
    check.add_argument("dataset", type=Path, help="dataset folder")
    check.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    check.add_argument("--quiet", action="store_true", help="no progress bar")
    check.set_defaults(run=run_check)
    _add_import_parser(actions)
    _add_release_parser(actions)
    migrate = actions.add_parser(
        "migrate", help="move unlabelled images from imagesTr/ to imagesUnlabelledTr/ (flareseg's current layout)",
        description="Move the images of cases declared unlabelled from imagesTr/ to imagesUnlabelledTr/, so that "
        "nnU-Net v2 finds a label for every image of imagesTr/; updates numTraining in dataset.json.",
    )
    migrate.add_argument("dataset", type=Path, help="dataset folder")
    migrate.set_defaults(run=run_migrate)


def _add_import_parser(actions) -> None:
    imported = actions.add_parser(
        "import", help="add a CT with its RTSTRUCT or DICOM-SEG to a dataset as a training case",
        description="Add a CT and the RT structure set or DICOM-SEG drawn on it to a dataset folder (created "
        "when missing): imagesTr/CASE_0000.nii.gz, labelsTr/CASE.nii.gz on the CT's grid, and dataset.json. "
        "Structure names become flareseg classes by their names and usual aliases, or by --map; structures "
        "that match nothing are left out and listed. A structure mapped to several classes (NAME=stomach+"
        "duodenum) is written as one merged label, declared in dataset.json label_mapping. The case's "
        "annotated_classes lists what it labels: other organs count as unlabelled, not background.",
    )
    imported.add_argument("dataset", type=Path, help="dataset folder (nnU-Net v2 layout)")
    imported.add_argument("--case", required=True, type=_case_id, metavar="ID", help="case id, e.g. cb001")
    imported.add_argument("--ct", required=True, type=Path, help="the CT: DICOM series folder or NIfTI/NRRD/MHA file")
    imported.add_argument("--structures", required=True, type=Path, metavar="FILE",
                          help="RTSTRUCT or DICOM-SEG file (.dcm) drawn on that CT")
    imported.add_argument("--map", dest="rules", type=_map_rule, action="append", default=[],
                          metavar="NAME=CLASS", help="what a structure name means: a flareseg class or alias, several "
                          "joined by '+' for a merged structure, or 'ignore' to leave it out (repeatable)")
    imported.add_argument("--overwrite", action="store_true", help="replace a case of the same id")
    imported.set_defaults(run=run_import)


def _add_release_parser(actions) -> None:
    from flareseg.datasets.release_import import LABEL_GROUPS

    release = actions.add_parser(
        "import-release", help="link a FLARE22 or FLARE23 training release into a dataset folder",
        description="Link the training images, labels and unlabelled images of an unpacked FLARE22 or FLARE23 "
        "release into a new dataset folder in the nnU-Net v2 layout (unlabelled images in imagesUnlabelledTr/), "
        "as symbolic links (hard links where those are not allowed; never copies), and write dataset.json with the "
        "FLARE labels and the unlabelled cases. For FLARE23, every label map is read to put its case in the "
        f"smallest label group that holds its classes ({', '.join(LABEL_GROUPS)}), written as annotated_classes "
        "and in label_groups.csv beside dataset.json.",
    )
    release.add_argument("source", type=Path, metavar="SRC", help="the unpacked release folder")
    release.add_argument("--out", required=True, type=Path, metavar="DATASET", help="dataset folder to create")
    release.add_argument("--layout", default="auto", type=_layout, metavar="LAYOUT",
                         help="flare22, flare23 or auto (default: detect by the folder names)")
    release.add_argument("--group", dest="groups", action="append", default=[], type=_group_override,
                         metavar="CASE=GROUP", help="put a FLARE23 case in this label group (repeatable)")
    release.add_argument("--groups", dest="groups_file", type=Path, metavar="FILE",
                         help="CSV file of group overrides with 'case' and 'group' columns (e.g. an edited "
                         "label_groups.csv); --group wins over it")
    release.add_argument("--overwrite", action="store_true",
                         help="rebuild an existing dataset folder's links and dataset.json (only links are removed)")
    release.add_argument("--workers", type=positive_int, default=None, metavar="N",
                         help="processes reading FLARE23 label maps (default: one per core, at most 8, from 32 maps on)")
    release.add_argument("--quiet", action="store_true", help="no progress bar")
    release.set_defaults(run=run_import_release)


def _layout(text: str) -> str:
    from flareseg.datasets.release_import import LAYOUTS

    if text not in ("auto", *LAYOUTS):
        raise argparse.ArgumentTypeError(f"unknown layout {text!r}: choose auto, {', '.join(LAYOUTS)}")
    return text


def _group_override(text: str) -> tuple[str, str]:
    from flareseg.datasets.release_import import LABEL_GROUPS

    case_id, sep, group = text.partition("=")
    if not sep or not case_id.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: write CASE=GROUP")
    if group.strip() not in LABEL_GROUPS:
        raise argparse.ArgumentTypeError(f"unknown group {group.strip()!r}: choose {', '.join(LABEL_GROUPS)}")
    return case_id.strip(), group.strip()


def _map_rule(text: str):
    from flareseg.datasets.structure_mapping import parse_map_rule

    return _as_argument_type(parse_map_rule, text)


def _case_id(text: str) -> str:
    from flareseg.datasets.dicom_import import check_case_id

    return _as_argument_type(check_case_id, text)


def _as_argument_type(parse, text: str):
    """``parse(text)``, with an InputError turned into argparse's usage error."""
    from flareseg.errors import InputError

    try:
        return parse(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run_check(args: argparse.Namespace) -> int:
    from flareseg.datasets.check import check_dataset, format_report
    from flareseg.io.atomic import atomic_write_text

    report = check_dataset(args.dataset, progress=not args.quiet)
    print(format_report(report))
    if args.json:
        payload = {
            "dataset": str(report.spec.root),
            "label_mapping": [{"name": e.name, "value": e.value, "class_id": None if e.members else e.class_id,
                               "members": list(e.members)} for e in report.spec.mapping.entries],
            "cases": report.kinds,
            "class_voxels": report.class_voxels,
            "class_cases": report.class_cases,
            "merged_voxels": report.merged_voxels,
            "merged_cases": report.merged_cases,
            "problems": [asdict(p) for p in report.problems],
        }
        atomic_write_text(args.json, json.dumps(payload, indent=2))
    return 1 if report.errors else 0


def run_import(args: argparse.Namespace) -> int:
    from flareseg.datasets.dicom_import import ImportRequest, format_report, import_case

    request = ImportRequest(ct=args.ct, structures=args.structures, dataset=args.dataset, case_id=args.case,
                            rules=tuple(args.rules), overwrite=args.overwrite)
    print(format_report(import_case(request)))
    return 0


def run_import_release(args: argparse.Namespace) -> int:
    from flareseg.cli.messages import one_line_warnings
    from flareseg.datasets.release_import import ImportOptions, format_report, import_release, read_group_file

    groups = read_group_file(args.groups_file) if args.groups_file else {}
    groups.update(dict(args.groups))
    options = ImportOptions(layout=args.layout, overwrite=args.overwrite, groups=groups, workers=args.workers,
                            progress=not args.quiet)
    with one_line_warnings():
        report = import_release(args.source, args.out, options)
    print(format_report(report))
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    from flareseg.datasets.layout import UNLABELLED_FOLDER, migrate_unlabelled

    moved = migrate_unlabelled(args.dataset)
    if moved:
        print(f"moved {len(moved)} unlabelled image(s) from imagesTr/ to {UNLABELLED_FOLDER}/ of {args.dataset}")
    else:
        print(f"{args.dataset}: nothing to move (no unlabelled image in imagesTr/)")
    return 0
