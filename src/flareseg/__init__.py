"""flareseg: fast, low-resource segmentation of abdominal CT (FLARE organs and lesions)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("flareseg")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
