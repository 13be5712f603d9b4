"""A trained model directory, and the per-stage runners (PyTorch or onnxruntime) that use it.

A model directory is self-contained::

    model.json          format version, class names, stages, training summary
    recipe.yaml         the resolved recipe (preprocessing, network, stages, training)
    <stage>.pt          weights per stage (float16 state dict)
    <stage>.onnx        optional, written by ``flareseg export-onnx``
    training/           logs, curves and checkpoints (not needed to predict)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from flareseg.errors import InputError
from flareseg.recipes import Recipe, recipe_from_dict

MODEL_JSON = "model.json"
RECIPE_YAML = "recipe.yaml"
FORMAT_VERSION = 1
BACKENDS = ("auto", "torch", "onnx")

Runner = Callable[[np.ndarray], np.ndarray]  # [1, 1, D, H, W] float32 -> logits [1, C, D, H, W]


def weights_path(model_dir: Path, stage: str) -> Path:
    return Path(model_dir) / f"{stage}.pt"


def onnx_path(model_dir: Path, stage: str) -> Path:
    return Path(model_dir) / f"{stage}.onnx"


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


def read_recipe(model_dir: Path) -> Recipe:
    """The resolved recipe stored in a model directory.

    Raises:
        InputError: Not a model directory, or an unsupported format version.
    """
    model_dir = Path(model_dir)
    meta_path, recipe_path = model_dir / MODEL_JSON, model_dir / RECIPE_YAML
    if not meta_path.is_file() or not recipe_path.is_file():
        raise InputError(f"{model_dir}: not a flareseg model directory (needs {MODEL_JSON} and {RECIPE_YAML})")
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{model_dir}: model format {meta.get('format_version')} is not {FORMAT_VERSION}")
    return recipe_from_dict(yaml.safe_load(recipe_path.read_text()), source=str(recipe_path))


def load_model(model_dir: str | Path, backend: str = "auto", device: str = "cpu",
               threads: int | None = None) -> LoadedModel:
    """Load every stage of a model directory.

    Args:
        model_dir: The directory ``flareseg train`` wrote.
        backend: ``"onnx"`` (onnxruntime, CPU), ``"torch"``, or ``"auto"``: onnxruntime when every
            stage has an ``.onnx`` file and the device is the CPU, else PyTorch.
        device: ``"cpu"`` or ``"cuda"`` (PyTorch backend).
        threads: CPU threads for the network (default: the library's own choice).
    """
    model_dir = Path(model_dir)
    recipe = read_recipe(model_dir)
    names = [stage.name for stage in recipe.stages]
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        has_onnx = all(onnx_path(model_dir, name).is_file() for name in names)
        backend = "onnx" if has_onnx and device == "cpu" else "torch"
    if backend == "onnx":
        runners = {name: onnx_runner(onnx_path(model_dir, name), threads) for name in names}
    else:
        runners = {stage.name: torch_runner(model_dir, recipe, stage, device, threads) for stage in recipe.stages}
    return LoadedModel(model_dir, recipe, runners, backend)


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
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return lambda x: session.run(None, {input_name: x})[0]


def torch_runner(model_dir: Path, recipe: Recipe, stage, device: str, threads: int | None) -> Runner:
    """A stage's network built from the registry with its ``<stage>.pt`` weights, in PyTorch."""
    import torch

    from flareseg.models.registry import build_network

    path = weights_path(model_dir, stage.name)
    if not path.is_file():
        raise InputError(f"{path}: missing weights for stage {stage.name!r}")
    if threads:
        torch.set_num_threads(threads)
    net = build_network(recipe.network.name, recipe.network.kwargs, len(stage.labels) + 1)
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict({k: v.float() for k, v in state.items()})
    net.to(device).eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(x).to(device)).float().cpu().numpy()

    return run
