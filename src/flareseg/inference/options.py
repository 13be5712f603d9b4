"""How to predict and what to write: plain settings, importable without numpy, SimpleITK or a
network runtime (the command line parses them before the scan starts reading)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Network runtimes: ``auto`` picks onnxruntime on the CPU when the model's ONNX files match its weights.
BACKENDS = ("auto", "torch", "onnx")
#: Mask formats: an image file, or DICOM objects that reference a DICOM input series.
OUTPUT_TYPES = ("nifti", "dicom_seg", "rtstruct")


@dataclass(frozen=True)
class PredictOptions:
    """How to predict.

    Attributes:
        model_dir: A model directory; None means the bundled default model.
        backend: ``"auto"``, ``"onnx"`` or ``"torch"`` (see :func:`flareseg.inference.model.load_model`).
        device: ``"cpu"`` or ``"cuda"``.
        threads: CPU threads for the network; None lets the library choose.
        postprocess: Keep the largest connected component per organ.
        second_chance: Look for the organs the coarse stage misses near their anatomical
            neighbours (:func:`flareseg.inference.cascade.crop_boxes`).
        fine_boundaries: Draw fine stages' boundaries from interpolated class scores at full
            resolution (:func:`flareseg.inference.cascade.labels_on_grid`); slower.
        force: Segment scans whose intensities do not look like CT (see :func:`flareseg.io.read_ct`).
    """

    model_dir: Path | None = None
    backend: str = "auto"
    device: str = "cpu"
    threads: int | None = None
    postprocess: bool = True
    second_chance: bool = True
    fine_boundaries: bool = False
    force: bool = False


@dataclass(frozen=True)
class OutputOptions:
    """What to write per scan.

    Attributes:
        output_type: One of :data:`OUTPUT_TYPES`.
        statistics: Also write per-organ statistics (``MASK.json``; one CSV for several scans).
        preview: Also write ``MASK.png``: three views through the organs with the mask overlaid.
        overwrite: Redo scans whose mask already exists (several scans only; else they are skipped).
    """

    output_type: str = "nifti"
    statistics: bool = False
    preview: bool = False
    overwrite: bool = False
