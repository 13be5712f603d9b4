"""A trained model directory, and the per-stage runners (PyTorch or onnxruntime) that use it.

A model directory is self-contained::

    model.json          format version, class names, stages, sha256 of each <stage>.pt, training summary
    recipe.yaml         the resolved recipe (preprocessing, network, stages, training)
    <stage>.pt          weights per stage (float16 state dict)
    <stage>.onnx        optional, written by ``flareseg export-onnx``
    onnx.json           written with them: the sha256 of each ONNX file and of the weights it came from
    training/           logs, curves and checkpoints (not needed to predict)

An ONNX file runs only while ``onnx.json`` says it is the export of the ``.pt`` file beside it, so
a stage retrained in place cannot silently run its old network. Weights run only while their
sha256 is the one ``model.json`` records (directories from before it recorded them load unchecked),
and only when every tensor fits the network the recipe describes.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from flareseg.errors import FlaresegWarning, InputError
from flareseg.inference.options import BACKENDS
from flareseg.recipes import Recipe, recipe_from_dict

MODEL_JSON = "model.json"
RECIPE_YAML = "recipe.yaml"
ONNX_JSON = "onnx.json"
#: The ``model.json`` key of ``{stage: sha256 of <stage>.pt}``.
WEIGHTS_SHA256 = "weights_sha256"
FORMAT_VERSION = 1

Runner = Callable[[np.ndarray], np.ndarray]  # [B, 1, *spatial] float32 -> logits [B, C, *spatial]


def weights_path(model_dir: Path, stage: str) -> Path:
    return Path(model_dir) / f"{stage}.pt"


def onnx_path(model_dir: Path, stage: str) -> Path:
    return Path(model_dir) / f"{stage}.onnx"


class StaleOnnxWarning(FlaresegWarning):
    """``backend="auto"`` found ONNX files that do not match the weights and runs PyTorch instead."""


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def weight_hashes(model_dir: Path, stages: list[str]) -> dict[str, str]:
    """``{stage: sha256 of <stage>.pt}``, as ``model.json`` records them under :data:`WEIGHTS_SHA256`."""
    return {stage: file_sha256(weights_path(model_dir, stage)) for stage in stages}


def read_onnx_record(model_dir: Path) -> dict[str, dict[str, str]]:
    """What ``onnx.json`` records per stage: ``{"weights_sha256": ..., "onnx_sha256": ...}``, the
    hashes of ``<stage>.pt`` and ``<stage>.onnx`` when the latter was exported; empty when absent.

    Raises:
        InputError: ``onnx.json`` is not a JSON object with a ``stages`` object.
    """
    path = Path(model_dir) / ONNX_JSON
    if not path.is_file():
        return {}
    try:
        stages = json.loads(path.read_text())["stages"]
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path}: unreadable ONNX export record ({error}); run `flareseg export-onnx {model_dir}`")
    if not isinstance(stages, dict):
        raise InputError(f"{path}: unreadable ONNX export record; run `flareseg export-onnx {model_dir}`")
    return stages


def onnx_mismatch(model_dir: Path, stage: str, record: dict[str, dict[str, str]]) -> str | None:
    """Why ``<stage>.onnx`` must not stand in for ``<stage>.pt``, or None when ``record`` (from
    :func:`read_onnx_record`) says it is the export of exactly these weights."""
    onnx_file, weights_file = onnx_path(model_dir, stage), weights_path(model_dir, stage)
    entry = record.get(stage)
    if not onnx_file.is_file():
        return f"{onnx_file.name} is missing"
    if not isinstance(entry, dict):
        return f"{onnx_file.name} has no record of the weights it was exported from"
    if not weights_file.is_file():
        return f"{weights_file.name} is missing"
    if file_sha256(weights_file) != entry.get("weights_sha256"):
        return f"{onnx_file.name} was exported from other weights than {weights_file.name}"
    if file_sha256(onnx_file) != entry.get("onnx_sha256"):
        return f"{onnx_file.name} changed after it was exported"
    return None


def onnx_mismatches(model_dir: Path, stages: list[str]) -> str | None:
    """The :func:`onnx_mismatch` reasons of all stages on one line, or None when every ONNX file matches."""
    record = read_onnx_record(model_dir)
    if not record and all(onnx_path(model_dir, stage).is_file() for stage in stages):  # an older export
        return f"the ONNX files have no record of the weights they were exported from (no {ONNX_JSON})"
    reasons = [reason for stage in stages if (reason := onnx_mismatch(model_dir, stage, record))]
    return ", ".join(reasons) or None


@dataclass
class LoadedModel:
    """A model ready to predict.

    Attributes:
        directory: The model directory.
        recipe: Its resolved recipe.
        runners: One callable per stage name.
        backend: ``"torch"`` or ``"onnx"``.
    """

    directory: Path
    recipe: Recipe
    runners: dict[str, Runner]
    backend: str


def read_meta(model_dir: Path) -> dict:
    """The ``model.json`` of a model directory.

    Raises:
        InputError: Not a model directory, an unreadable ``model.json``, an unsupported format
            version, or recorded weight hashes that are not ``{stage: hex}``.
    """
    model_dir = Path(model_dir)
    meta_path, recipe_path = model_dir / MODEL_JSON, model_dir / RECIPE_YAML
    if not meta_path.is_file() or not recipe_path.is_file():
        raise InputError(f"{model_dir}: not a flareseg model directory (needs {MODEL_JSON} and {RECIPE_YAML})")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{meta_path}: unreadable model description ({error})") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        found = meta.get("format_version") if isinstance(meta, dict) else None
        raise InputError(f"{model_dir}: model format {found} is not {FORMAT_VERSION}")
    hashes = meta.get(WEIGHTS_SHA256, {})
    if not isinstance(hashes, dict) or not all(isinstance(v, str) for v in hashes.values()):
        raise InputError(f"{meta_path}: {WEIGHTS_SHA256} must map stage names to sha256 hex digests")
    return meta


def read_recipe(model_dir: Path) -> Recipe:
    """The resolved recipe stored in a model directory (its ``model.json`` checked by :func:`read_meta`).

    Raises:
        InputError: Not a model directory, an unsupported format version, or an unreadable recipe.
    """
    model_dir = Path(model_dir)
    read_meta(model_dir)
    recipe_path = model_dir / RECIPE_YAML
    try:
        data = yaml.safe_load(recipe_path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise InputError(f"{recipe_path}: unreadable recipe ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{recipe_path}: a recipe is a YAML mapping")
    return recipe_from_dict(data, source=str(recipe_path))


def load_model(model_dir: str | Path, backend: str = "auto", device: str = "cpu",
               threads: int | None = None) -> LoadedModel:
    """Load every stage of a model directory.

    Args:
        model_dir: The directory ``flareseg train`` wrote.
        backend: ``"onnx"`` (onnxruntime, CPU), ``"torch"``, or ``"auto"``: onnxruntime on the CPU
            when the model has ONNX files that match its weights, else PyTorch.
        device: ``"cpu"`` or ``"cuda"`` (PyTorch backend).
        threads: CPU threads for the network (default: the library's own choice).

    Raises:
        InputError: A file of the directory is missing or unreadable (naming it); a stage's
            weights differ from the sha256 ``model.json`` records or do not fit its network
            (:func:`stage_network`); or ``backend="onnx"`` and an ONNX file is not recorded in
            ``onnx.json`` as the export of its stage's current ``.pt`` file.

    Warns:
        StaleOnnxWarning: ``backend="auto"`` on the CPU found ONNX files that do not match the
            weights (as for ``"onnx"``), and runs PyTorch instead.
    """
    model_dir = Path(model_dir)
    recipe = read_recipe(model_dir)
    names = [stage.name for stage in recipe.stages]
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    fallback = None
    if backend == "auto":
        backend, fallback = auto_backend(model_dir, names, device)
    if backend == "onnx":
        mismatch = onnx_mismatches(model_dir, names)
        if mismatch:
            raise InputError(f"{model_dir}: {mismatch}; run `flareseg export-onnx {model_dir}`, "
                             "or predict with --backend torch")
        runners = {name: onnx_runner(onnx_path(model_dir, name), threads) for name in names}
    else:
        runners = {stage.name: torch_runner(model_dir, recipe, stage, device, threads) for stage in recipe.stages}
    if fallback:  # said once the weights have loaded: broken weights are one error, not a warning and an error
        warnings.warn(fallback, StaleOnnxWarning, stacklevel=2)
    return LoadedModel(model_dir, recipe, runners, backend)


def auto_backend(model_dir: Path, stages: list[str], device: str) -> tuple[str, str | None]:
    """``"onnx"`` on the CPU when the ONNX files match the weights; else ``"torch"``, with the text of a
    :class:`StaleOnnxWarning` when ONNX files are there but do not match."""
    if device != "cpu" or not any(onnx_path(model_dir, name).is_file() for name in stages):
        return "torch", None
    mismatch = onnx_mismatches(model_dir, stages)
    if mismatch:
        return "torch", (f"{model_dir}: {mismatch}; running PyTorch instead of onnxruntime (slower); "
                         f"run `flareseg export-onnx {model_dir}` to use ONNX again")
    return "onnx", None


def onnx_runner(path: Path, threads: int | None) -> Runner:
    """A stage's network from its ONNX file, on onnxruntime's CPU provider."""
    import onnxruntime as ort

    if not path.is_file():
        raise InputError(f"{path}: missing; run `flareseg export-onnx {path.parent}` first")
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = False  # return activation memory between stages
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for a broken file
        raise InputError(f"{path}: unreadable ONNX network ({str(error).splitlines()[0][:200]})") from None
    input_name = session.get_inputs()[0].name
    return lambda x: session.run(None, {input_name: x})[0]


def torch_runner(model_dir: Path, recipe: Recipe, stage, device: str, threads: int | None) -> Runner:
    """A stage's network built from the registry with its ``<stage>.pt`` weights, in PyTorch."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    net = stage_network(model_dir, recipe, stage).to(device)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(x).to(device)).float().cpu().numpy()

    return run


def stage_network(model_dir: Path, recipe: Recipe, stage):
    """A stage's network built from the registry with its ``<stage>.pt`` weights (float32, CPU, eval mode).

    Raises:
        InputError: The weights are missing, differ from the sha256 ``model.json`` records, cannot
            be read, or do not fit the network (naming the first parameter that does not).
    """
    import torch

    from flareseg.models.registry import build_network

    path = weights_path(model_dir, stage.name)
    if not path.is_file():
        raise InputError(f"{path}: missing weights for stage {stage.name!r}")
    recorded = read_meta(model_dir).get(WEIGHTS_SHA256, {}).get(stage.name)
    if recorded is not None and file_sha256(path) != recorded:
        raise InputError(f"{path}: weights differ from those {MODEL_JSON} records (sha256): damaged or replaced")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise TypeError("not a state dict of tensors")
    except Exception as error:  # a truncated or foreign file: torch raises many kinds
        raise InputError(f"{path}: unreadable weights for stage {stage.name!r} "
                         f"({str(error).strip().splitlines()[0][:200]})") from None
    network = recipe.stage_network(stage)
    net = build_network(network.name, network.kwargs, stage.channels)
    misfit = state_misfit(state, net.state_dict())
    if misfit:
        raise InputError(f"{path}: weights do not fit the recipe's {network.name} for stage {stage.name!r} ({misfit})")
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net.eval()


def state_misfit(state: dict, expected: dict) -> str | None:
    """The first way a state dict does not fit a network's (``net.state_dict()``), or None."""
    for name, tensor in expected.items():
        if name not in state:
            return f"no tensor {name!r}"
        if tuple(state[name].shape) != tuple(tensor.shape):
            return f"{name!r} is {_shape(state[name].shape)}, the network needs {_shape(tensor.shape)}"
    extra = [name for name in state if name not in expected]
    return f"unexpected tensor {extra[0]!r}" if extra else None


def _shape(shape) -> str:
    return "x".join(map(str, shape)) or "a scalar"
