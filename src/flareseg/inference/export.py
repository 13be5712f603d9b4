"""Export a model directory's networks to ONNX, checked against PyTorch on the same input."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from flareseg.inference.model import torch_runner, onnx_path, read_recipe, weights_path


def export_onnx(model_dir: str | Path, opset: int = 17, atol: float = 1e-3) -> list[Path]:
    """Write ``<stage>.onnx`` beside each ``<stage>.pt`` and check that onnxruntime agrees with
    PyTorch (max abs logit difference <= ``atol``) on a random input.

    Returns:
        The ONNX files written.
    """
    import onnxruntime as ort
    import torch

    from flareseg.models.registry import build_network

    model_dir = Path(model_dir)
    recipe = read_recipe(model_dir)
    written = []
    for stage in recipe.stages:
        net = build_network(recipe.network.name, recipe.network.kwargs, len(stage.labels) + 1)
        state = torch.load(weights_path(model_dir, stage.name), map_location="cpu", weights_only=True)
        net.load_state_dict({k: v.float() for k, v in state.items()})
        net.eval()
        example = torch.rand(1, 1, *stage.size_zyx)
        path = onnx_path(model_dir, stage.name)
        tmp = path.with_name(path.name + ".tmp")
        with warnings.catch_warnings():  # tracer chatter about shape checks that are constant here
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (example,), str(tmp), dynamo=False, opset_version=opset,
                              input_names=["image"], output_names=["logits"])
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        expected = torch_runner(model_dir, recipe, stage, "cpu", None)(example.numpy())
        got = session.run(None, {"image": example.numpy()})[0]
        difference = float(np.abs(expected - got).max())
        if difference > atol:
            tmp.unlink()
            raise RuntimeError(f"stage {stage.name}: onnxruntime differs from PyTorch by {difference:.2e}")
        os.replace(tmp, path)
        written.append(path)
    return written
