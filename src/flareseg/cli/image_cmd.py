"""``flareseg info`` and ``flareseg convert``: look at and convert CT files."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from flareseg import labels
from flareseg.cli.arguments import positive_int
from flareseg.cli.messages import one_line_warnings

_ACQUISITION_HELP = ("which acquisition of a DICOM series that holds several over the same slices "
                     "(from 1; `flareseg info` lists them)")


def add_parsers(subparsers) -> None:
    info = subparsers.add_parser(
        "info", help="show the label map, or the geometry of a CT file or DICOM folder",
        description="Without IMAGE: list the FLARE classes, NSD tolerances and organ groups. "
        "With IMAGE: print its grid, orientation (with the angle of an oblique grid) and intensity range, "
        "and why it does not look like a CT, if it does not; for a DICOM series of several acquisitions, list them.",
    )
    info.add_argument("image", nargs="?", type=Path, help="NIfTI/NRRD/MHA file or DICOM series folder")
    info.add_argument("--acquisition", type=positive_int, metavar="N", help=_ACQUISITION_HELP)
    info.set_defaults(run=run_info)

    convert = subparsers.add_parser(
        "convert", help="convert a CT (e.g. a DICOM folder) to NIfTI, keeping its geometry",
        description="Read a CT file or DICOM series folder and write it as one image file.",
    )
    convert.add_argument("-i", "--input", required=True, type=Path, help="CT file or DICOM series folder")
    convert.add_argument("-o", "--output", required=True, type=Path, help="output file (.nii.gz, .nii, .nrrd, .mha)")
    convert.add_argument("--canonical", action="store_true",
                         help="reorient to the canonical LPS axis order (exact: flips and permutations only; "
                              "an oblique scan is refused)")
    convert.add_argument("--acquisition", type=positive_int, metavar="N", help=_ACQUISITION_HELP)
    convert.add_argument("--force", action="store_true",
                         help="convert an image whose intensities or spacing do not look like a CT")
    convert.set_defaults(run=run_convert)


def run_info(args: argparse.Namespace) -> int:
    if args.image is None:
        print(format_label_map())
        return 0
    from flareseg.io import read_volume
    from flareseg.io.plausibility import not_ct_reason, spacing_doubt

    with one_line_warnings():
        if args.image.is_dir() and args.acquisition is None and print_acquisitions(args.image):
            return 0
        volume = read_volume(args.image, args.acquisition)
    geometry = volume.geometry
    low, high = volume.array.min(), volume.array.max()
    print(f"{args.image}: {geometry.describe()}")
    print(f"  origin (LPS mm): {tuple(round(v, 3) for v in geometry.origin_lps_mm)}")
    print(f"  values: {volume.array.dtype}, {low:g} .. {high:g}")
    doubt = not_ct_reason(volume.array, float(low), float(high)) or spacing_doubt(geometry)
    if doubt:
        print(f"  not like a CT: {doubt}")
    return 0


def print_acquisitions(folder: Path) -> bool:
    """Print the acquisitions of a DICOM series that holds several; False (nothing printed) for one."""
    from flareseg.io import DicomInputWarning, dicom_acquisitions

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DicomInputWarning)  # reading the series says it again
        acquisitions = dicom_acquisitions(folder)
    if len(acquisitions) < 2:
        return False
    print(f"{folder}: DICOM series of {len(acquisitions)} acquisitions over the same slice range; "
          "show one with --acquisition N")
    for acquisition in acquisitions:
        print(f"  {acquisition.describe()}")
    return True


def run_convert(args: argparse.Namespace) -> int:
    from flareseg.cli.paths import refuse_overwriting_input
    from flareseg.errors import GeometryError, InputError
    from flareseg.io import read_ct, write_volume
    from flareseg.preprocessing.orientation import check_axis_aligned, to_canonical

    refuse_overwriting_input([args.input], args.output)
    with one_line_warnings():
        volume = read_ct(args.input, args.acquisition, args.force)
    if args.canonical:
        try:
            check_axis_aligned(volume.geometry, str(args.input))
        except GeometryError as error:
            raise InputError(f"{error}; convert without --canonical to keep its exact grid") from None
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
