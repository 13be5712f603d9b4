"""The bundled default model: size, card, export record, a golden prediction of the bundled
sample (ONNX and PyTorch), ONNX-vs-PyTorch logits on the sample's real network inputs, and a CPU
path that never imports PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flareseg.data import default_model_dir, sample_ct_path
from flareseg.evaluation.surface import dice
from flareseg.inference.model import LoadedModel, load_model, onnx_mismatches
from flareseg.inference.predict import segment
from flareseg.io import read_ct, read_volume
from flareseg.labels import ORGAN_IDS

# The bundled model's mask of the bundled sample, from `flareseg predict` (default ONNX backend);
# see tests/data/README.md. Regenerate it only when the default model is deliberately replaced.
GOLDEN_MASK = Path(__file__).resolve().parents[1] / "data" / "default_model_sample_mask.nii.gz"
GOLDEN_MIN_DSC = 0.99  # per class present in the golden mask or the prediction

# Max |ONNX - PyTorch| logit on each stage's real inputs, as a fraction of the largest |logit|: the
# criterion export_onnx checks. Measured on the sample: coarse 4.7e-3 on logits up to 42 (1.1e-4 of
# it), abdominal_large and gastrointestinal 2.6e-4, vessels 3e-5, small 8e-6.
LOGITS_RTOL = 1e-3


def _golden_dsc(mask: np.ndarray) -> dict[int, float]:
    golden = read_volume(GOLDEN_MASK).array
    present = sorted((set(np.unique(golden)) | set(np.unique(mask))) - {0})
    return {int(c): dice(golden == c, mask == c) for c in present}


@pytest.fixture(scope="module")
def sample_mask():
    from flareseg import predict

    return predict(sample_ct_path())  # the public API, bundled model, ONNX on CPU


@pytest.fixture(scope="module")
def torch_run():
    """The PyTorch backend's mask of the sample, and per stage every network input the cascade
    built for it with PyTorch's logits (``[1, 1, D, H, W]`` -> ``[1, C, D, H, W]``, float32)."""
    model = load_model(default_model_dir(), backend="torch")
    calls: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}

    def recorded(name, run):
        def record(x):
            calls.setdefault(name, []).append((x, run(x)))
            return calls[name][-1][1]
        return record

    runners = {name: recorded(name, run) for name, run in model.runners.items()}
    mask = segment(read_ct(sample_ct_path()), LoadedModel(model.directory, model.recipe, runners, model.backend))
    return mask, calls


def test_default_model_is_small_complete_and_documented():
    model_dir = default_model_dir()
    files = {p.name for p in model_dir.iterdir()}
    meta = json.loads((model_dir / "model.json").read_text())
    assert {"model.json", "recipe.yaml", "MODEL_CARD.md"} <= files
    assert all(f"{stage}.pt" in files and f"{stage}.onnx" in files for stage in meta["stages"])
    assert sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file()) < 20 * 2 ** 20
    assert (model_dir / "training" / "coarse" / "log.csv").is_file()  # the training log travels with it
    assert [int(i) for i in meta["classes"]] == list(ORGAN_IDS)
    assert "onnx.json" in files and onnx_mismatches(model_dir, meta["stages"]) is None
    assert load_model(model_dir).backend == "onnx"


def test_sample_prediction_matches_the_golden_mask(sample_mask):
    ct = read_volume(sample_ct_path())
    assert sample_mask.geometry.matches(ct.geometry) and sample_mask.array.shape == ct.array.shape
    assert sample_mask.array.dtype == np.uint8 and set(np.unique(sample_mask.array)) <= set(range(14))
    scores = _golden_dsc(sample_mask.array)
    assert len(scores) >= 10 and all(score >= GOLDEN_MIN_DSC for score in scores.values()), scores


def test_torch_backend_matches_the_golden_mask(torch_run):
    mask = torch_run[0]
    scores = _golden_dsc(mask.array)
    assert len(scores) >= 10 and all(score >= GOLDEN_MIN_DSC for score in scores.values()), scores


def test_onnx_logits_match_torch_on_the_sample_network_inputs(torch_run):
    calls = torch_run[1]
    onnx = load_model(default_model_dir(), backend="onnx")
    assert set(calls) == {stage.name for stage in onnx.recipe.stages}
    for name, pairs in calls.items():
        for x, expected in pairs:
            difference = float(np.abs(onnx.runners[name](x) - expected).max())
            assert difference <= LOGITS_RTOL * float(np.abs(expected).max()), (name, difference)


def test_cpu_prediction_does_not_import_torch(tmp_path):
    code = ("import sys; from flareseg.cli.main import main; "
            f"rc = main(['predict', '-i', {str(sample_ct_path())!r}, '-o', {str(tmp_path / 'm.nii.gz')!r}]); "
            "assert rc == 0; print('torch' in sys.modules, 'monai' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["False", "False"]
