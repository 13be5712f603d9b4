"""What ``flareseg predict`` writes for a scan: the mask as NIfTI (or another image file), DICOM-SEG
or RT structure set, and optionally per-organ statistics and a preview image beside it."""

from __future__ import annotations

import json
from pathlib import Path

from flareseg.errors import InputError
from flareseg.inference.options import OUTPUT_TYPES, OutputOptions  # noqa: F401 - importable from here too
from flareseg.io import Volume, strip_image_suffix, write_labelmap
from flareseg.io.write import write_suffix

_DICOM_SUFFIX = ".dcm"


def mask_suffix(output_type: str) -> str:
    """File ending of masks in a folder run."""
    return ".nii.gz" if output_type == "nifti" else _DICOM_SUFFIX


def check_mask_path(path: Path, output_type: str, source: Path | None = None) -> None:
    """Refuse, before any work, a mask path the output type cannot be written to, or a DICOM output
    of a ``source`` scan that is not a DICOM series folder."""
    if output_type == "nifti":
        write_suffix(path)
        return
    if not path.name.lower().endswith(_DICOM_SUFFIX):
        raise InputError(f"{path}: a {output_type} output is a DICOM file; name it *{_DICOM_SUFFIX}")
    if source is not None and not source.is_dir():
        raise InputError(f"{source}: --output-type {output_type} needs a DICOM series folder as input")


def check_outputs(source: Path, path: Path, outputs: OutputOptions, acquisition: int | None = None) -> None:
    """Refuse, before the scan ``source`` is read, a mask ``path`` that ``outputs`` cannot be written to."""
    check_mask_path(path, outputs.output_type, source)
    check_dicom_source(source, outputs.output_type, acquisition)


def side_path(mask_path: Path, suffix: str) -> Path:
    """A file beside a mask: ``MASK.nii.gz`` -> ``MASK.json`` or ``MASK.png``."""
    stem = strip_image_suffix(mask_path.name) or mask_path.name.removesuffix(_DICOM_SUFFIX)
    return mask_path.with_name(stem + suffix)


def write_mask(mask: Volume, source: Path, path: Path, output_type: str, acquisition: int | None = None) -> Path:
    """Write a mask in the given format; DICOM outputs reference ``source``, a DICOM series folder
    (its ``acquisition`` where it holds several).

    Raises:
        InputError: A DICOM output of a scan that is not a DICOM series, or a failed write.
    """
    check_mask_path(path, output_type, source)
    if output_type == "nifti":
        return write_labelmap(mask.array, mask.geometry, path)
    if output_type == "dicom_seg":
        from flareseg.io.dicom_seg_out import write_dicom_seg

        return write_dicom_seg(mask, source, path, acquisition)
    from flareseg.io.rtstruct_out import write_rtstruct

    return write_rtstruct(mask, source, path, acquisition)


#: Modality of each DICOM output type.
_MODALITIES = {"dicom_seg": "SEG", "rtstruct": "RTSTRUCT"}


def mask_is_complete(path: Path, output_type: str, source: Path | None = None) -> bool:
    """True when a previous run left a complete, readable mask of this output type at ``path``
    (for an image file ``source``, on its grid)."""
    if not path.is_file():
        return False
    try:
        if output_type == "nifti":
            from flareseg.io import read_geometry
            from flareseg.io.integrity import check_nifti_complete

            geometry = read_geometry(path)
            if path.name.lower().endswith((".nii", ".nii.gz")):
                check_nifti_complete(path)
            return source is None or source.is_dir() or geometry.matches(read_geometry(source))
        import pydicom

        return pydicom.dcmread(path, stop_before_pixels=True).get("Modality") == _MODALITIES[output_type]
    except Exception:  # any reason it cannot be read means: redo it
        return False


def extras_present(mask_path: Path, options: OutputOptions) -> bool:
    """True when the preview and statistics file a scan needs are there (a folder run keeps its
    statistics in one CSV, rebuilt each run)."""
    return not options.preview or side_path(mask_path, ".png").is_file()


def check_dicom_source(source: Path, output_type: str, acquisition: int | None = None) -> None:
    """Refuse, before predicting, a DICOM input whose slices a DICOM output could not reference."""
    if output_type != "nifti":
        from flareseg.io.dicom_grid import source_headers

        source_headers(source, acquisition)


def write_extras(ct: Volume, mask: Volume, mask_path: Path, options: OutputOptions,
                 statistics_file: bool = True) -> dict | None:
    """The preview and statistics of one mask, as the options ask.

    Returns:
        The statistics (organ -> values) when asked for, else None; written as ``MASK.json``
        when ``statistics_file``.
    """
    stats = None
    if options.statistics:
        from flareseg.inference.statistics import organ_statistics
        from flareseg.io.atomic import atomic_write_text

        stats = organ_statistics(ct, mask)
        if statistics_file:
            atomic_write_text(side_path(mask_path, ".json"), json.dumps(stats, indent=1) + "\n")
    if options.preview:
        from flareseg.inference.preview import write_preview

        write_preview(ct, mask, side_path(mask_path, ".png"))
    return stats
