"""How the command line reports what is not an error: flareseg's warnings, one line each."""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager


@contextmanager
def one_line_warnings():
    """Print flareseg's own warnings (:class:`flareseg.errors.FlaresegWarning`: an ONNX fallback, a
    duplicate DICOM file read once) as one ``flareseg: warning: ...`` line each, every time."""
    from flareseg.errors import FlaresegWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always", FlaresegWarning)
        show = warnings.showwarning

        def show_one_line(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, FlaresegWarning):
                print(f"flareseg: warning: {message}", file=sys.stderr)
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = show_one_line
        yield
