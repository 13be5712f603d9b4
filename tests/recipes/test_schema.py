"""Recipes load, validate and round-trip through plain data."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from flareseg.errors import InputError
from flareseg.recipes import builtin_recipes, load_recipe, recipe_from_dict, recipe_to_dict


def test_builtin_coarse_to_fine_names_the_paper_groups():
    recipe = load_recipe("coarse_to_fine")
    assert "coarse_to_fine" in builtin_recipes()
    assert [s.name for s in recipe.stages] == ["coarse", "abdominal_large", "gastrointestinal", "vessels", "small"]
    assert recipe.stages[0].crop == "whole" and recipe.stages[-1].crop == "each"
    assert recipe.class_ids == tuple(range(1, 14))
    assert recipe.preprocess.hu_window == (-100.0, 300.0)
    assert recipe.train.weight_decay == 1e-4


def test_round_trip_through_yaml_gives_an_equal_recipe():
    recipe = load_recipe("coarse_to_fine")
    again = recipe_from_dict(yaml.safe_load(yaml.safe_dump(recipe_to_dict(recipe))))
    assert again == recipe


def test_overrides_are_applied_and_validated(tmp_path):
    recipe = load_recipe("coarse_to_fine", {"epochs": 3, "schedule": "poly"})
    assert recipe.train.epochs == 3 and recipe.train.schedule == "poly"
    with pytest.raises(InputError, match="schedule"):
        load_recipe("coarse_to_fine", {"schedule": "cosine"})


def test_an_epochs_override_replaces_the_epochs_of_every_stage():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "default_model.yaml"  # coarse: 144, others: train's 12
    assert [s.epochs for s in load_recipe(path).stages] == [144, None, None, None, None]
    recipe = load_recipe(path, {"epochs": 5})
    assert recipe.train.epochs == 5 and all(stage.epochs is None for stage in recipe.stages)
    assert recipe_from_dict(yaml.safe_load(yaml.safe_dump(recipe_to_dict(recipe)))) == recipe
    assert [s.epochs for s in load_recipe(path, {"iterations_per_epoch": 5}).stages] == [144, None, None, None, None]


def _modified(**changes):
    data = recipe_to_dict(load_recipe("coarse_to_fine"))
    for path, value in changes.items():
        target = data
        *parents, leaf = path.split("__")
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        target[leaf] = value
    return data


@pytest.mark.parametrize("changes, message", [
    ({"train__epoch": 3}, "unknown keys"),
    ({"stages__0__crop": "group"}, "first stage"),
    ({"stages__1__labels": [1, 99]}, "labels"),
    ({"stages__1__size_zyx": [64, 64, 60]}, "divisible"),
    ({"stages__2__name": "coarse"}, "unique"),
    ({"stages__3__crop": "box"}, "crop must be"),
    ({"train__val_fraction": 1.0}, "val_fraction"),
    ({"stages__1__epochs": 0}, "epochs must be"),
    ({"stages__0__spacing_mm": [5, 5]}, "three voxel sizes"),
    ({"stages__0__spacing_mm": [5, 0, 5]}, "three voxel sizes"),
    ({"stages__0__spacing_mm": 5}, "three voxel sizes"),
    ({"stages__0__spacing_mm": [True, 1, 1]}, "three voxel sizes"),
    ({"train__foreground_share": "0.5"}, "foreground_share"),
    ({"train__augment": {"afine": 0.8}}, "train.augment"),
    ({"train__augment": {"noise": 2}}, "train.augment"),
    ({"train__augment": {"low_res": 0.25}}, "train.augment"),
    ({"train__augment": {"blur": -0.2}}, "train.augment"),
])
def test_invalid_recipes_are_rejected_with_the_reason(changes, message):
    with pytest.raises(InputError, match=message):
        recipe_from_dict(_modified(**changes))


def test_unknown_recipe_name_lists_the_builtins(tmp_path):
    with pytest.raises(InputError, match="coarse_to_fine"):
        load_recipe("no_such_recipe")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just a list")
    with pytest.raises(InputError, match="mapping"):
        load_recipe(bad)


def test_recipe_is_frozen():
    recipe = load_recipe("coarse_to_fine")
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.name = "other"


def test_default_model_settings_file_is_a_valid_recipe():
    from pathlib import Path

    recipe = load_recipe(Path(__file__).resolve().parents[2] / "scripts" / "default_model.yaml")
    # coarse_to_fine's stages, but a coarse stage at 5 mm on 48x64x64 patches for 144 epochs
    coarse = dict(epochs=144, spacing_mm=(5.0, 5.0, 5.0), size_zyx=(48, 64, 64), sampler="spacing_patches")
    assert recipe.stages == tuple(
        dataclasses.replace(stage, **(coarse if stage.name == "coarse" else {}))
        for stage in load_recipe("coarse_to_fine").stages
    )
    assert recipe.train.augment.get("field_of_view") == 0.5 and recipe.train.foreground_share == 0.0


def test_network_defaults_match_the_registered_networks():
    import inspect

    from flareseg.models.registry import NETWORKS
    from flareseg.recipes.schema import NETWORK_DEFAULTS

    assert set(NETWORK_DEFAULTS) == set(NETWORKS)
    for name, defaults in NETWORK_DEFAULTS.items():
        parameters = inspect.signature(NETWORKS[name]).parameters
        assert defaults["levels"] == parameters["levels"].default
        assert defaults["spatial_dims"] == (parameters["spatial_dims"].default if "spatial_dims" in parameters else 3)


def test_samplers_follow_crop_spacing_and_network_when_unnamed():
    recipe = load_recipe("coarse_to_fine")
    assert [s.sampler for s in recipe.stages] == ["whole_resize"] + ["crop_resize"] * 4
    assert load_recipe("nnunet_2d").stages[0].sampler == "slices_2d"
    assert load_recipe("phased_skip").stages[0].sampler == "spacing_patches"


def test_older_dice_and_ce_weights_become_the_losss_arguments():
    data = _modified()
    data["train"].pop("loss")
    data["train"].update(dice_weight=0.5, ce_weight=2.0)
    loss = recipe_from_dict(data).train.loss
    assert loss.name == "dice_ce" and loss.kwargs == {"dice_weight": 0.5, "ce_weight": 2.0}
    data["train"]["loss"] = {"name": "dice"}
    with pytest.raises(InputError, match="dice_ce"):
        recipe_from_dict(data)


def test_phases_resolve_and_the_last_one_gives_the_predicting_network():
    recipe = load_recipe("phased_skip")
    stage = recipe.stages[0]
    assert [p.epochs for p in recipe.phases(stage)] == [10, 10]
    assert all(p.learning_rate == recipe.train.learning_rate and p.optimizer == "adamw" for p in recipe.phases(stage))
    assert recipe.stage_network(stage, 0).kwargs["skip"] is False
    assert recipe.stage_network(stage).kwargs["skip"] is True
    ablation = load_recipe("phased_skip_ablation")
    assert ablation.stage_network(ablation.stages[0], 0).kwargs["skip"] is True
    short = load_recipe("phased_skip", {"epochs": 2})
    assert [p.epochs for p in short.phases(short.stages[0])] == [2, 2]
    single = load_recipe("coarse_to_fine")
    assert [(p.epochs, p.trainable) for p in single.phases(single.stages[0])] == [(40, ())]


@pytest.mark.parametrize("recipe, path, value, message", [
    ("nnunet_2d", "stages__0__size_zyx", [64, 64, 64], "2 sizes"),
    ("nnunet_2d", "stages__0__size_zyx", [96, 96], "divisible"),
    ("nnunet_2d", "train__augment", {"elastic": 0.2}, "3D only"),
    ("nnunet_2d", "stages__0__sampler", "spacing_patches", "3D network"),
    ("nnunet_2d", "stages__0__spacing_mm", [1, "isotropic", 1], "spacing_mm"),
    ("nnunet_2d", "preprocess__normalization", "minmax", "normalization"),
    ("nnunet_2d", "preprocess__percentiles", [99.5, 0.5], "percentiles"),
    ("nnunet_2d", "preprocess__statistics", {"low": 0, "high": 1, "mean": 0, "std": 0}, "statistics"),
    ("nnunet_2d", "train__optimizer", "adam", "optimizer"),
    ("nnunet_2d", "postprocess", "fill_holes", "postprocess"),
    ("phased_skip", "stages__0__phases", [{"epochs": 0}], "epochs must be"),
    ("phased_skip", "stages__0__phases", [{"epochs": 1, "network": {"levels": 3}}], "keep the parameters"),
    ("phased_skip", "stages__0__phases", [{"epochs": 1, "network": {"base_channels": 16}}], "keep the parameters"),
    ("phased_skip", "stages__0__phases", [{"epochs": 1, "trainable": "head.*"}], "trainable and cases are lists"),
    ("phased_skip", "stages__0__phases", [{"epochs": 1, "cases": "all_organs"}], "trainable and cases are lists"),
    ("phased_skip", "stages__0__phases", [{"epochs": 1, "learning_rate": "1e-4"}], "learning_rate"),
    ("phased_skip", "stages__0__phases", [{"epochs": 1, "learning_rate": -0.1}], "learning_rate"),
    ("phased_skip", "stages__0__epochs", 3, "epochs per phase"),
    ("phased_skip", "train__loss", {"name": "focal"}, "train.loss"),
    ("phased_skip", "train__loss", "dice", "loss is a mapping"),
    ("phased_skip", "train__learning_rate", "1e-3", "learning_rate"),
    ("phased_skip", "train__grad_clip", 0, "grad_clip"),
    ("dual_decoder_2d", "stages__0__labels", [14, 1, 2], "lesion class"),
    ("dual_decoder_2d", "stages__0__labels", [1, 2, 3], "lesion class"),
    ("phased_skip", "stages__0__phases", [{"epochs": 1, "optimizer": "lbfgs"}], "optimizer"),
    ("coarse_to_fine", "stages__1__sampler", "whole_resize", "crop whole"),
    ("coarse_to_fine", "stages__0__sampler", "spacing_patches", "needs spacing_mm"),
])
def test_invalid_engine_settings_are_rejected(recipe, path, value, message):
    data = recipe_to_dict(load_recipe(recipe))
    target = data
    *parents, leaf = path.split("__")
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    target[leaf] = value
    with pytest.raises(InputError, match=message):
        recipe_from_dict(data)


def test_every_builtin_recipe_round_trips():
    for name in builtin_recipes():
        recipe = load_recipe(name)
        assert recipe_from_dict(yaml.safe_load(yaml.safe_dump(recipe_to_dict(recipe)))) == recipe


def test_label_patterns_match_the_dataset_layouts():
    from flareseg.datasets.layout import LABEL_PATTERNS
    from flareseg.recipes.schema import _LABEL_PATTERNS

    assert _LABEL_PATTERNS == LABEL_PATTERNS


@pytest.mark.parametrize("phase, message", [
    ({"epochs": 1, "cases": ["organs"]}, "label patterns"),
    ({"epochs": 1, "cases": ["unlabelled"]}, "pseudo_labels"),
    ({"epochs": 1, "pseudo_labels": "yes"}, "pseudo_labels"),
])
def test_phase_case_selection_is_validated(phase, message):
    data = recipe_to_dict(load_recipe("phased_skip"))
    data["stages"][0]["phases"] = [phase]
    with pytest.raises(InputError, match=message):
        recipe_from_dict(data)


def test_loss_names_match_the_losses_module():
    from flareseg.recipes.schema import _LOSSES
    from flareseg.training.losses import LOSSES

    assert set(_LOSSES) == set(LOSSES)


def _with_pseudo_phase(pseudo) -> dict:
    data = recipe_to_dict(load_recipe("dual_decoder_2d"))  # its phases train on pseudo-labels
    data["train"]["loss"]["pseudo"] = pseudo
    return data


def test_a_pseudo_label_loss_round_trips_and_is_left_out_when_unset():
    pseudo = {"name": "gce", "kwargs": {"q": 0.7, "dice_weight": 1.0}, "weight": 0.5}
    recipe = recipe_from_dict(_with_pseudo_phase(pseudo))
    from flareseg.recipes.schema import PseudoLossConfig

    assert recipe.train.loss.pseudo == PseudoLossConfig("gce", {"q": 0.7, "dice_weight": 1.0}, 0.5)
    data = recipe_to_dict(recipe)
    assert data["train"]["loss"]["pseudo"] == pseudo
    assert recipe_from_dict(yaml.safe_load(yaml.safe_dump(data))) == recipe
    assert recipe_from_dict(_with_pseudo_phase({"name": "sce"})).train.loss.pseudo.weight == 1.0
    # a recipe without one writes what it wrote before; attention_dmfnet's students train with GCE
    with_pseudo = {name for name in builtin_recipes() if "pseudo" in recipe_to_dict(load_recipe(name))["train"]["loss"]}
    assert with_pseudo == {"attention_dmfnet"}


@pytest.mark.parametrize("pseudo, message", [
    ({"name": "focal"}, "train.loss.pseudo names one of"),
    ({"name": "gce", "weight": -1}, "weight >= 0"),
    ({"name": "gce", "weight": "half"}, "weight >= 0"),
    ({"name": "gce", "kwargs": [0.7]}, "kwargs as a mapping"),
    ({"kwargs": {"q": 0.7}}, "name"),
    ({"name": "gce", "q": 0.7}, "unknown keys"),
    ("gce", "expected a mapping"),
])
def test_invalid_pseudo_label_losses_are_rejected(pseudo, message):
    with pytest.raises(InputError, match=message):
        recipe_from_dict(_with_pseudo_phase(pseudo))


def test_a_pseudo_label_loss_without_a_phase_on_pseudo_labels_is_kept_for_a_student():
    data = recipe_to_dict(load_recipe("phased_skip"))
    data["train"]["loss"]["pseudo"] = {"name": "gce"}
    assert recipe_from_dict(data).train.loss.pseudo.name == "gce"
