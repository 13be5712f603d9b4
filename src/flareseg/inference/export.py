"""Export a model directory's networks to ONNX, checked against PyTorch, and record which weights
each ONNX file came from (``onnx.json``), so prediction can refuse one that no longer matches."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from flareseg.errors import InputError
from flareseg.inference.model import (
    ONNX_JSON,
    file_sha256,
    onnx_path,
    read_onnx_record,
    read_recipe,
    stage_network,
    torch_runner,
    weights_path,
)
from flareseg.io.atomic import atomic_path, atomic_write_text


#: Class scores at least this large in magnitude are out of contention (compared by argmax only).
OUT_OF_CONTENTION = 1e3
#: The share of voxels whose argmax must agree: near-ties (an untrained network's, a lesion score
#: at its threshold) may flip within float32 error.
MIN_ARGMAX_AGREEMENT = 0.995


def export_onnx(model_dir: str | Path, opset: int = 17, rtol: float = 3e-3) -> list[Path]:
    """Write ``<stage>.onnx`` beside each ``<stage>.pt``, check that onnxruntime agrees with
    PyTorch, and record both files' sha256 in ``onnx.json``.

    The check runs each network on a seeded random input and on the bundled sample CT as that
    stage's input (the whole scan, resized or resampled to the stage's spacing, HU-windowed); the max abs logit difference must be
    at most ``rtol * max(1, max |PyTorch logit|)`` (where both are in contention), and the argmax
    must agree on :data:`MIN_ARGMAX_AGREEMENT` of the voxels. It is relative because onnxruntime's float32 error grows with the activations: on the
    bundled coarse stage it is 1e-4 on random input but 4.7e-3 on the sample CT, whose logits reach
    42 (PyTorch float32 is within 2e-5 of float64); a lesion ResUNet without ASPP at 1.6 mm
    reached 1.4e-3 of its largest logit, with the argmax the same everywhere.

    Returns:
        The ONNX files written.

    Raises:
        RuntimeError: A stage's ONNX network disagrees; its file is left as it was.
    """
    model_dir = Path(model_dir)
    recipe = read_recipe(model_dir)
    sample_hu = _sample_ct_hu()
    written = []
    for stage in recipe.stages:
        written.append(export_stage(model_dir, recipe, stage, opset, rtol, sample_hu))
    return written


def export_stage(model_dir: Path, recipe, stage, opset: int, rtol: float,
                 sample_hu: tuple[np.ndarray, tuple[float, float, float]]) -> Path:
    """Export, check and record one stage (see :func:`export_onnx`)."""
    import onnxruntime as ort
    import torch

    net = stage_network(model_dir, recipe, stage)
    random = np.random.default_rng(0).random((1, 1, *stage.size_zyx), dtype=np.float32)
    hu, spacing = sample_hu
    sample = network_sample(hu, spacing, recipe, stage)
    dynamic = None  # a stage at a fixed spacing takes any multiple of the network's size step
    if stage.sampler == "slices_2d":
        dynamic = {name: {0: "batch", 2: "height", 3: "width"} for name in ("image", "logits")}
    elif stage.sampler == "spacing_patches":
        dynamic = {name: {2: "depth", 3: "height", 4: "width"} for name in ("image", "logits")}
    inputs = {"random input": random, "the sample CT": sample}
    path = onnx_path(model_dir, stage.name)
    reference = torch_runner(model_dir, recipe, stage, "cpu", None)
    with atomic_path(path) as tmp:  # a network that disagrees never replaces the file
        with warnings.catch_warnings():  # tracer chatter about shape checks that are constant here
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (torch.from_numpy(random),), str(tmp), dynamo=False, opset_version=opset,
                              input_names=["image"], output_names=["logits"], dynamic_axes=dynamic)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        for name, x in inputs.items():
            expected, got = reference(x), session.run(None, {"image": x})[0]
            # scores pushed out of contention (a dual network's "no lesion", about -1e4) are compared
            # by their argmax only: their float32 step alone is 1e-3
            kept = (np.abs(expected) < OUT_OF_CONTENTION) & (np.abs(got) < OUT_OF_CONTENTION)
            difference = float(np.abs(expected - got)[kept].max(initial=0.0))
            allowed = rtol * max(1.0, float(np.abs(expected)[kept].max(initial=0.0)))
            agree = float(np.mean(expected.argmax(1) == got.argmax(1)))
            if not difference <= allowed or agree < MIN_ARGMAX_AGREEMENT:
                raise RuntimeError(f"stage {stage.name}: onnxruntime differs from PyTorch by {difference:.2e} "
                                   f"on {name} (allowed {allowed:.2e}), argmax agrees on {agree:.2%}")
    record_export(model_dir, stage.name)
    return path


def network_sample(hu: np.ndarray, spacing_zyx_mm, recipe, stage) -> np.ndarray:
    """A stage's network input from a HU array, as prediction builds it: ``[1, 1, D, H, W]``
    (the whole input, padded for the network), or for ``slices_2d`` ``[2, 1, H, W]``, two
    middle slices, padded."""
    from flareseg.inference.inferers import stage_image
    from flareseg.preprocessing.crop import pad_for_network
    from flareseg.preprocessing.intensity import intensity_map

    intensity = intensity_map(recipe.preprocess)
    image = stage_image(hu, spacing_zyx_mm, stage, intensity)
    multiple = recipe.stage_network(stage).size_multiple
    if stage.sampler == "slices_2d":
        middle = image.shape[0] // 2
        slices = [pad_for_network(image[i], multiple, intensity.air)[0] for i in (middle, min(middle + 1, len(image) - 1))]
        return np.stack(slices)[:, None]
    if stage.sampler == "spacing_patches":
        image = pad_for_network(image, multiple, intensity.air)[0]
    return np.ascontiguousarray(image[None, None])


def record_export(model_dir: str | Path, stage: str) -> None:
    """Record in ``onnx.json`` that ``<stage>.onnx`` is the export of ``<stage>.pt`` as they are now::

        {"stages": {"<stage>": {"weights_sha256": "<hex>", "onnx_sha256": "<hex>"}, ...}}
    """
    model_dir = Path(model_dir)
    try:
        stages = read_onnx_record(model_dir)
    except InputError:  # an unreadable record is replaced: what it said can no longer be trusted
        stages = {}
    stages[stage] = {"weights_sha256": file_sha256(weights_path(model_dir, stage)),
                     "onnx_sha256": file_sha256(onnx_path(model_dir, stage))}
    atomic_write_text(model_dir / ONNX_JSON, json.dumps({"stages": stages}, indent=1) + "\n")


def _sample_ct_hu() -> tuple[np.ndarray, tuple[float, float, float]]:
    """The bundled sample CT's canonical HU array ``[z, y, x]`` and its spacing ``(z, y, x)`` in mm."""
    from flareseg.data import sample_ct_path
    from flareseg.io import read_ct
    from flareseg.preprocessing.orientation import to_canonical

    canonical = to_canonical(read_ct(sample_ct_path()))[0]
    return canonical.array, canonical.geometry.spacing_zyx_mm
