"""Write one DICOM dataset so that the file appears complete or not at all."""

from __future__ import annotations

from pathlib import Path

import pydicom

from flareseg.errors import InputError
from flareseg.io.atomic import atomic_path


def write_dicom_file(dataset: pydicom.Dataset, path: Path) -> Path:
    """Write ``dataset`` as a DICOM file (with preamble and file meta) through a hidden temporary.

    Returns:
        ``path``.

    Raises:
        InputError: The folder cannot be created, or writing failed (disk full, no permission, a
            value pydicom cannot encode); the temporary is removed and an existing file kept.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{path.parent}: cannot create output folder ({error.strerror})") from None
    with atomic_path(path) as temporary:
        try:
            dataset.save_as(temporary, enforce_file_format=True)
        except OSError:
            raise  # atomic_path reports it
        except Exception as error:  # pydicom refuses a value: one line, not a traceback
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
            raise InputError(f"{path}: cannot write ({reason})") from None
    return path
