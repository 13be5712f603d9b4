"""Segment CT files or DICOM folders: the Python API behind ``flareseg predict``."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from flareseg.datasets.layout import CHANNEL_SUFFIX
from flareseg.errors import FlaresegError, InputError
from flareseg.inference.cascade import segment_canonical
from flareseg.inference.model import LoadedModel, load_model
from flareseg.io import Volume, has_image_suffix, read_ct, strip_image_suffix, write_labelmap
from flareseg.io.write import write_suffix
from flareseg.preprocessing.orientation import to_canonical


@dataclass(frozen=True)
class PredictOptions:
    """How to predict.

    Attributes:
        model_dir: A model directory; None means the bundled default model.
        backend: ``"auto"``, ``"onnx"`` or ``"torch"`` (see :func:`load_model`).
        device: ``"cpu"`` or ``"cuda"``.
        threads: CPU threads for the network; None lets the library choose.
        postprocess: Keep the largest connected component per organ.
        second_chance: Look for the organs the coarse stage misses near their anatomical
            neighbours (:func:`flareseg.inference.cascade.crop_boxes`).
        fine_boundaries: Draw fine stages' boundaries from interpolated class scores at full
            resolution (:func:`flareseg.inference.cascade.labels_on_grid`); slower.
    """

    model_dir: Path | None = None
    backend: str = "auto"
    device: str = "cpu"
    threads: int | None = None
    postprocess: bool = True
    second_chance: bool = True
    fine_boundaries: bool = False


def open_model(options: PredictOptions) -> LoadedModel:
    """Load the model the options name (the bundled default when ``model_dir`` is None)."""
    from flareseg.data import default_model_dir

    return load_model(options.model_dir or default_model_dir(), options.backend, options.device, options.threads)


def segment(ct: Volume, model: LoadedModel, postprocess: bool = True, second_chance: bool = True,
            fine_boundaries: bool = False) -> Volume:
    """Segment a CT volume; the label map (uint8 FLARE ids) has the CT's exact geometry."""
    canonical, reorientation = to_canonical(ct)
    labels = segment_canonical(canonical.array, canonical.geometry.spacing_zyx_mm, model, postprocess, second_chance,
                               fine_boundaries)
    return Volume(reorientation.invert(labels), ct.geometry)


def predict(input: str | os.PathLike, output: str | os.PathLike | None = None,
            model: LoadedModel | None = None, options: PredictOptions = PredictOptions()) -> Volume:
    """Segment one CT (NIfTI/NRRD/MHA file or DICOM series folder).

    Args:
        input: The CT.
        output: Where to write the mask (.nii.gz, .nii, .nrrd, .mha); None writes nothing.
        model: A model from :func:`open_model`, to reuse across calls; None loads ``options``'s.
        options: Model and runtime settings.

    Returns:
        The label map, on the input's grid.
    """
    if output is not None:
        write_suffix(Path(output))  # a bad file type fails before the work, not after
    model = model or open_model(options)
    mask = segment(read_ct(input), model, options.postprocess, options.second_chance, options.fine_boundaries)
    if output is not None:
        write_labelmap(mask.array, mask.geometry, output)
    return mask


@dataclass
class FolderReport:
    """Outcome of predicting a folder: seconds per written mask, and the error of each failure."""

    done: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def folder_inputs(folder: Path) -> list[Path]:
    """Image files and DICOM series sub-folders of ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir()
                  if (p.is_file() and has_image_suffix(p)) or (p.is_dir() and not p.name.startswith(".")))


def output_name(input: Path, suffix: str = ".nii.gz") -> str:
    """``CASE_0000.nii.gz`` or ``CASE.nii.gz`` or a DICOM folder ``CASE`` -> ``CASE.nii.gz``."""
    stem = strip_image_suffix(input.name) or input.name
    if stem.endswith(CHANNEL_SUFFIX):
        stem = stem[: -len(CHANNEL_SUFFIX)]
    return stem + suffix


def predict_folder(input_dir: str | os.PathLike, output_dir: str | os.PathLike,
                   options: PredictOptions = PredictOptions(), progress: bool = True) -> FolderReport:
    """Segment every CT in a folder into ``output_dir``; a bad scan is reported, not fatal."""
    from tqdm import tqdm

    inputs = folder_inputs(Path(input_dir))
    if not inputs:
        raise InputError(f"{input_dir}: no CT files (.nii.gz, .nii, .nrrd, .mha) or DICOM folders")
    model = open_model(options)
    report = FolderReport()
    for path in tqdm(inputs, desc="predict", unit="scan", disable=not progress):
        start = time.perf_counter()
        try:
            predict(path, Path(output_dir) / output_name(path), model, options)
        except (FlaresegError, OSError, RuntimeError, ValueError) as error:
            report.failed[path.name] = str(error)
            continue
        report.done[path.name] = time.perf_counter() - start
    return report
