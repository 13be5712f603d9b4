"""Write a file so that it appears complete or not at all.

Data goes to a hidden temporary beside the target, is flushed to disk (``fsync``: on a full
disk or a quota some file systems only report the failure then, and after a power cut the
renamed file is never empty), and is renamed over the target. On any failure the temporary
is removed and an existing target is left as it was.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from flareseg.errors import InputError


def temporary_path(path: Path, suffix: str | None = None) -> Path:
    """A hidden, unique name beside ``path`` that keeps its ending (``suffix``, default
    ``path.suffix``), as writers that pick the format from the name need."""
    suffix = path.suffix if suffix is None else suffix
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f".{stem}.{uuid.uuid4().hex[:8]}.partial{suffix}")


def output_folder(path: str | os.PathLike) -> Path:
    """Create a folder and its parents; a file in the way or no permission is a one-line InputError."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{path}: cannot create output folder ({error.strerror or error})") from None
    return path


def fsync_file(path: Path) -> None:
    """Flush a written file's data to disk."""
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; when the block ends it is fsynced and renamed onto ``path``.

    Args:
        path: The file to (re)place. Its folder must exist (:func:`output_folder`).
        suffix: The ending the temporary keeps (default ``path.suffix``; e.g. ``".nii.gz"``).

    Raises:
        InputError: Writing, flushing or renaming failed with an OSError (full disk, no permission).
            Any other exception from the block propagates; either way the temporary is removed.
    """
    path = Path(path)
    temporary = temporary_path(path, suffix)
    try:
        yield temporary
        fsync_file(temporary)
        os.replace(temporary, path)
    except OSError as error:
        raise InputError(f"{path}: cannot write ({error.strerror or error})") from None
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`); returns ``path``."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)
