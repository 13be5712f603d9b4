"""Baseline for predict_speed.py: one network of a flareseg model run over the *whole* scan at
the fine stage's resolution with MONAI ``sliding_window_inference`` (read, reorient, resample,
clip, infer, argmax, resample the labels back, write), as a one-network pipeline would.

    python benchmarks/sliding_window_baseline.py MODEL_DIR STAGE SPACING_MM CT OUT
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from flareseg.inference.model import read_recipe, weights_path
from flareseg.io import Volume, read_ct, write_labelmap
from flareseg.models.registry import build_network
from flareseg.preprocessing.intensity import clip_and_scale
from flareseg.preprocessing.orientation import to_canonical
from flareseg.preprocessing.resample import resize, shape_for_spacing


def main(model_dir: str, stage_name: str, spacing_mm: str, ct_path: str, out_path: str) -> None:
    recipe = read_recipe(model_dir)
    stage = next(s for s in recipe.stages if s.name == stage_name)
    net = build_network(recipe.network.name, recipe.network.kwargs, len(stage.labels) + 1)
    net.load_state_dict({k: v.float() for k, v in torch.load(weights_path(model_dir, stage_name), weights_only=True).items()})
    net.eval()
    ct = read_ct(ct_path)
    canonical, reorientation = to_canonical(ct)
    spacing = float(spacing_mm)
    shape = shape_for_spacing(canonical.array.shape, canonical.geometry.spacing_zyx_mm, (spacing,) * 3)
    image = clip_and_scale(resize(canonical.array, shape, order=1), recipe.preprocess.hu_window)
    with torch.inference_mode():
        logits = sliding_window_inference(torch.from_numpy(image)[None, None], stage.size_zyx, 1, net, overlap=0.25)
    lookup = np.array((0, *stage.labels), dtype=np.uint8)
    labels = resize(lookup[logits[0].argmax(0).numpy()], canonical.array.shape, order=0)
    write_labelmap(reorientation.invert(labels), ct.geometry, out_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
