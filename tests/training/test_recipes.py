"""Every built-in recipe trains on real scans (the loss falls), saves, reloads and predicts a real
scan on its exact grid with both the PyTorch and the ONNX backend (networks shrunk to run in seconds)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import yaml

from flareseg.inference.export import export_onnx
from flareseg.inference.model import load_model
from flareseg.inference.predict import predict
from flareseg.io import read_ct, read_volume
from flareseg.recipes import builtin_recipes, load_recipe, recipe_from_dict, recipe_to_dict
from flareseg.training.loop import RunOptions
from flareseg.training.train import train_model


@pytest.fixture
def lesion_dataset(tmp_path, data_dir):
    """The two real chest CTs with a lung-tumour mask each, as lesion (14)."""
    root = tmp_path / "Dataset002_Lesion"
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir(parents=True)
    for case in ("lung1", "lung2"):
        os.symlink(data_dir / "pyradiomics_lung" / f"{case}_image.nrrd", root / "imagesTr" / f"{case}_0000.nrrd")
        os.symlink(data_dir / "pyradiomics_lung" / f"{case}_label.nrrd", root / "labelsTr" / f"{case}.nrrd")
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0, "tumour": 1},
                                                   "numTraining": 2, "file_ending": ".nrrd"}))
    return root


def _shrunk(name: str, **train) -> dict:
    """A built-in recipe with its network narrowed and its schedule cut to a few iterations."""
    data = recipe_to_dict(load_recipe(name))
    data["network"]["kwargs"].update(base_channels=4, max_channels=16, levels=3)
    data["train"].update({"epochs": 3, "iterations_per_epoch": 6, "batch_size": 2, **train})
    for stage in data["stages"]:
        stage["size_zyx"] = [32, 32] if stage.get("sampler") == "slices_2d" or len(stage["size_zyx"]) == 2 \
            else [16, 32, 32]
        for phase in stage.get("phases") or []:
            phase["epochs"] = 2
    return data


def fixed_batch_loss(model_dir, stage_name: str, weights: str) -> float:
    """The stage's loss on the same 6 fixed training batches (no augmentation), with its initial
    weights (``"initial"``, as training builds them) or its trained ones (``"trained"``): a loss
    that falls on the same batches shows the recipe learns, where epoch means of a few random
    batches are too noisy to."""
    import numpy as np
    import torch

    from flareseg.inference.model import read_recipe
    from flareseg.models.registry import build_network
    from flareseg.training.loop import make_batch, patch_sampler
    from flareseg.training.losses import build_loss
    from flareseg.training.samples import _load

    recipe = read_recipe(model_dir)
    index, stage = next((i, s) for i, s in enumerate(recipe.stages) if s.name == stage_name)
    folder = next((model_dir / "training" / "cache").glob(f"{stage_name}-*"))
    samples = [sample for path in sorted(folder.glob("*.npz")) for sample in _load(path, path.stem)]
    torch.manual_seed(recipe.train.seed + index)
    network = recipe.stage_network(stage, 0 if weights == "initial" else -1)
    net = build_network(network.name, network.kwargs, stage.channels)
    if weights == "trained":
        state = torch.load(model_dir / f"{stage_name}.pt", weights_only=True)
        net.load_state_dict({k: v.float() for k, v in state.items()})
    loss_fn = build_loss(recipe.train.loss.name, recipe.train.loss.kwargs, recipe.train.loss.deep_supervision)
    rng = np.random.default_rng(0)
    patch = patch_sampler(stage, recipe, rng)
    net.train()
    losses = []
    with torch.no_grad():
        for _ in range(6):
            x, y, annotated, sets = make_batch(samples, rng.integers(len(samples), size=2), None, "cpu", patch)
            losses.append(float(loss_fn(net(x), y, annotated, sets)))
    return float(np.mean(losses))


def _check_trains_and_predicts(dataset, data, scan, tmp_path, stage):
    recipe = recipe_from_dict(data)
    model_dir = train_model(dataset, recipe, tmp_path / "model", RunOptions(progress=False))
    log = json.loads((model_dir / "training" / stage / "log.json").read_text())
    before, after = fixed_batch_loss(model_dir, stage, "initial"), fixed_batch_loss(model_dir, stage, "trained")
    assert after < before, (before, after)
    export_onnx(model_dir)
    ct = read_ct(scan)
    masks = {}
    for backend in ("torch", "onnx"):
        masks[backend] = predict(scan, tmp_path / f"{backend}.nii.gz", load_model(model_dir, backend=backend))
        written = read_volume(tmp_path / f"{backend}.nii.gz")
        assert written.array.shape == ct.array.shape and written.geometry.matches(ct.geometry)
    agree = np.mean(masks["torch"].array == masks["onnx"].array)
    assert agree > 0.999
    return model_dir, log


def test_nnunet_2d_trains_with_zscore_statistics_and_predicts_slice_by_slice(real_dataset, tmp_path, data_dir):
    data = _shrunk("nnunet_2d", val_fraction=0.0)
    model_dir, log = _check_trains_and_predicts(real_dataset, data, data_dir / "ts_example" / "example_ct_dicom.nii.gz",
                                                tmp_path, "slices")
    stored = yaml.safe_load((model_dir / "recipe.yaml").read_text())["preprocess"]["statistics"]
    assert stored["low"] < stored["mean"] < stored["high"] and stored["std"] > 0
    assert -200 < stored["mean"] < 300  # soft-tissue organs in HU


@pytest.mark.parametrize("name", ["phased_skip", "phased_skip_ablation"])
def test_phased_skip_recipes_train_on_real_lesions_in_two_phases(name, lesion_dataset, tmp_path, data_dir):
    data = _shrunk(name, learning_rate=0.01, foreground_share=1.0, iterations_per_epoch=10)
    model_dir, log = _check_trains_and_predicts(lesion_dataset, data, data_dir / "pyradiomics_lung" / "lung1_image.nrrd",
                                                tmp_path, "lesion")
    assert [row["phase"] for row in log] == [1, 1, 2, 2]


@pytest.fixture
def organs_and_lesions(tmp_path, data_dir):
    """Cases of three label patterns: all organs (the labelled abdominal scans), lesion only
    (the two chest CTs, their tumour as class 14), unlabelled (the TCIA scan)."""
    from flareseg import labels
    from flareseg.io import write_labelmap
    from flareseg.io.write import write_volume

    root = tmp_path / "Dataset003_Mixed"
    for folder in ("imagesTr", "labelsTr", "imagesUnlabelledTr"):
        (root / folder).mkdir(parents=True)
    ts = data_dir / "ts_example"
    shutil.copy(ts / "example_ct.nii.gz", root / "imagesTr" / "ts_full_0000.nii.gz")
    shutil.copy(ts / "flare_labels_fullct_from_v2fast.nii.gz", root / "labelsTr" / "ts_full.nii.gz")
    shutil.copy(data_dir / "tcia_pancreatic_ct_cbct_seg_cb001" / "ct.nii.gz",
                root / "imagesUnlabelledTr" / "tcia_0000.nii.gz")
    for case in ("lung1", "lung2"):
        ct = read_ct(data_dir / "pyradiomics_lung" / f"{case}_image.nrrd")
        write_volume(ct, root / "imagesTr" / f"{case}_0000.nii.gz")
        mask = read_volume(data_dir / "pyradiomics_lung" / f"{case}_label.nrrd")
        write_labelmap((mask.array > 0) * labels.LESION, mask.geometry, root / "labelsTr" / f"{case}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": labels.nnunet_labels(), "numTraining": 3, "file_ending": ".nii.gz",
        "annotated_classes": {"lung1": [14], "lung2": [14]}, "unlabelled": ["tcia"]}))
    return root


def test_dual_decoder_trains_its_steps_on_label_patterns_with_pseudo_labels(organs_and_lesions, tmp_path, data_dir):
    from flareseg.data import default_model_dir

    data = _shrunk("dual_decoder_2d")
    data["stages"][0]["spacing_mm"] = [5.0, 2.0, 2.0]  # a quarter of the pixels: seconds, not minutes
    for phase, epochs in zip(data["stages"][0]["phases"], (2, 1, 1)):
        phase.update(epochs=epochs, learning_rate=0.01)
    recipe = recipe_from_dict(data)
    model_dir = train_model(organs_and_lesions, recipe, tmp_path / "model", RunOptions(progress=False),
                            teacher=default_model_dir())
    log = json.loads((model_dir / "training" / "slices" / "log.json").read_text())
    assert [row["phase"] for row in log] == [1, 1, 2, 3]
    before = fixed_batch_loss(model_dir, "slices", "initial")
    assert fixed_batch_loss(model_dir, "slices", "trained") < before
    export_onnx(model_dir)
    scan = data_dir / "pyradiomics_lung" / "lung2_image.nrrd"
    ct = read_ct(scan)
    for backend in ("torch", "onnx"):
        mask = predict(scan, None, load_model(model_dir, backend=backend))
        assert mask.array.shape == ct.array.shape and mask.geometry.matches(ct.geometry)
        assert set(np.unique(mask.array)) <= set(range(15))


def test_attention_dmfnet_finds_the_organs_region_then_segments_the_organs_inside_it(real_dataset, tmp_path, data_dir):
    from flareseg.inference.cascade import crop_boxes, run_stage
    from flareseg.preprocessing.orientation import to_canonical
    from flareseg.preprocessing.stage_grid import FOREGROUND

    data = recipe_to_dict(load_recipe("attention_dmfnet"))
    data["network"]["kwargs"].update(stem_channels=16, channels=32, levels=3, units=1)
    data["train"].update(epochs=2, iterations_per_epoch=6, learning_rate=0.01, val_fraction=0.0)
    data["stages"][0]["size_zyx"], data["stages"][1]["size_zyx"] = [16, 16, 16], [16, 32, 32]
    scan = data_dir / "ts_example" / "example_ct_dicom.nii.gz"
    model_dir, log = _check_trains_and_predicts(real_dataset, data, scan, tmp_path, "organs")
    region_log = json.loads((model_dir / "training" / "region" / "log.json").read_text())
    assert "val_dice_foreground" in region_log[-1] and "val_dice_liver" not in region_log[-1]
    assert fixed_batch_loss(model_dir, "region", "trained") < fixed_batch_loss(model_dir, "region", "initial")
    # the region stage marks one foreground class; the organ crop is its box, and the organs stay in it
    model = load_model(model_dir)
    ct, _ = to_canonical(read_ct(scan))
    region = run_stage(model, model.recipe.stages[0], ct.array, ct.geometry.spacing_zyx_mm)
    assert set(np.unique(region).tolist()) == {0, FOREGROUND}
    (labels, box), = crop_boxes(region, model.recipe.stages[1], ct.array.shape, ct.geometry.spacing_zyx_mm)
    assert labels == tuple(range(1, 14))
    mask, _ = to_canonical(read_volume(tmp_path / "torch.nii.gz"))
    assert set(np.unique(mask.array).tolist()) <= set(range(14))
    outside = mask.array.copy()
    outside[box.slices] = 0
    assert not outside.any()


def test_every_builtin_recipe_is_tested_on_real_scans():
    tested = {"nnunet_2d", "phased_skip", "phased_skip_ablation", "dual_decoder_2d", "attention_dmfnet",
              "coarse_to_fine"}  # coarse_to_fine: test_train.py
    assert set(builtin_recipes()) <= tested
