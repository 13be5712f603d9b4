"""``flareseg info`` and ``flareseg convert``: look at and convert CT files."""

from __future__ import annotations

import argparse
from pathlib import Path

from flareseg import labels


def add_parsers(subparsers) -> None:
    info = subparsers.add_parser(
        "info", help="show the label map, or the geometry of a CT file or DICOM folder",
        description="Without IMAGE: list the FLARE classes, NSD tolerances and organ groups. "
        "With IMAGE: print its grid, orientation and intensity range.",
    )
    info.add_argument("image", nargs="?", type=Path, help="NIfTI/NRRD/MHA file or DICOM series folder")
    info.set_defaults(run=run_info)

    convert = subparsers.add_parser(
        "convert", help="convert a CT (e.g. a DICOM folder) to NIfTI, keeping its geometry",
        description="Read a CT file or DICOM series folder and write it as one image file.",
    )
    convert.add_argument("-i", "--input", required=True, type=Path, help="CT file or DICOM series folder")
    convert.add_argument("-o", "--output", required=True, type=Path, help="output file (.nii.gz, .nii, .nrrd, .mha)")
    convert.add_argument("--canonical", action="store_true",
                         help="reorient to the canonical LPS axis order (exact: flips and permutations only)")
    convert.set_defaults(run=run_convert)


def run_info(args: argparse.Namespace) -> int:
    if args.image is None:
        print(format_label_map())
        return 0
    from flareseg.io import read_volume

    volume = read_volume(args.image)
    geometry = volume.geometry
    print(f"{args.image}: {geometry.describe()}")
    print(f"  origin (LPS mm): {tuple(round(v, 3) for v in geometry.origin_lps_mm)}")
    print(f"  values: {volume.array.dtype}, {volume.array.min():g} .. {volume.array.max():g}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from flareseg.io import read_ct, write_volume
    from flareseg.preprocessing.orientation import to_canonical

    volume = read_ct(args.input)
    if args.canonical:
        volume, _ = to_canonical(volume)
    path = write_volume(volume, args.output)
    print(f"wrote {path} ({volume.geometry.describe()})")
    return 0


def format_label_map() -> str:
    lines = [f"{'id':>3}  {'class':<22} {'NSD tol (mm)':>12}  group"]
    group_of = {i: name for name, ids in labels.ORGAN_GROUPS.items() for i in ids}
    for label in labels.LABELS:
        lines.append(f"{label.id:>3}  {label.name:<22} {label.nsd_tolerance_mm:>12g}  {group_of.get(label.id, '-')}")
    return "\n".join(lines)
