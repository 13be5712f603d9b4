"""``flareseg dataset check|import``: verify a dataset folder in the nnU-Net v2 layout, add DICOM cases."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path


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
        args.json.write_text(json.dumps(payload, indent=2))
    return 1 if report.errors else 0


def run_import(args: argparse.Namespace) -> int:
    from flareseg.datasets.dicom_import import ImportRequest, format_report, import_case

    request = ImportRequest(ct=args.ct, structures=args.structures, dataset=args.dataset, case_id=args.case,
                            rules=tuple(args.rules), overwrite=args.overwrite)
    print(format_report(import_case(request)))
    return 0
