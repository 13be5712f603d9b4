"""Exceptions that flareseg raises for problems the user can fix."""


class FlaresegError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""


class InputError(FlaresegError, ValueError):
    """An input file or folder is missing, unreadable or not a 3D CT."""


class FlaresegWarning(UserWarning):
    """Something the user should know that did not stop the work; the CLI prints it on one line."""


class GeometryError(FlaresegError, ValueError):
    """Two images do not share a voxel grid and cannot be aligned without interpolation."""
