"""Write one DICOM dataset so that the file appears complete or not at all."""

from __future__ import annotations

from pathlib import Path

import pydicom

from flareseg.errors import InputError
from flareseg.io.atomic import atomic_path, output_folder


def write_dicom_file(dataset: pydicom.Dataset, path: Path) -> Path:
    """Write ``dataset`` as a DICOM file (with preamble and file meta) through a hidden temporary.

    Returns:
        ``path``.

    Raises:
        InputError: The folder cannot be created, or writing failed (disk full, no permission, a
            value pydicom cannot encode); the temporary is removed and an existing file kept.
    """
    path = Path(path)
    output_folder(path.parent)
    with atomic_path(path) as temporary:
        try:
            dataset.save_as(temporary, enforce_file_format=True)
        except OSError:
            raise  # atomic_path reports it
        except Exception as error:  # pydicom refuses a value: one line, not a traceback
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
            raise InputError(f"{path}: cannot write ({reason})") from None
    return path


def build_and_write(build, mask, series_folder: Path, path: Path, acquisition: int | None = None) -> Path:
    """Build a DICOM output of ``mask`` from the headers of the CT slices it lies on (``build(mask,
    sources)``) and write it atomically; a header the output needs but the slices lack is one
    InputError, not a traceback."""
    from flareseg.io.dicom_grid import source_slices

    sources = source_slices(Path(series_folder), mask.geometry, acquisition)
    try:
        dataset = build(mask, sources)
    except InputError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise InputError(f"{series_folder}: cannot build the DICOM output from these slices "
                         f"({type(error).__name__}: {error})") from None
    return write_dicom_file(dataset, Path(path))
