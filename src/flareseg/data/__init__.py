"""Files shipped with flareseg: the sample CT."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def sample_ct_path() -> Path:
    """The bundled sample CT (abdomen/pelvis, 3 mm, RAS; see data/sample/README.md)."""
    return Path(str(files("flareseg") / "data" / "sample" / "sample_ct.nii.gz"))


def sample_labels_path() -> Path:
    """TotalSegmentator model output on the sample CT, in FLARE ids (a reference, not ground truth)."""
    return Path(str(files("flareseg") / "data" / "sample" / "sample_labels.nii.gz"))


def default_model_dir() -> Path:
    """The model shipped with flareseg (see data/default_model/MODEL_CARD.md)."""
    return Path(str(files("flareseg") / "data" / "default_model"))
