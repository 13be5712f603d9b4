"""The ``train.mean_teacher`` switch: defaults, round trip, and each bad value refused by name."""

from __future__ import annotations

import pytest
import yaml

from flareseg.errors import InputError
from flareseg.recipes import TrainConfig, builtin_recipes, load_recipe, recipe_from_dict, recipe_to_dict
from flareseg.recipes.schema import MeanTeacherConfig


def _with_teacher(teacher) -> dict:
    data = recipe_to_dict(load_recipe("coarse_to_fine"))
    data["train"]["mean_teacher"] = teacher
    return data


def test_no_mean_teacher_by_default_and_none_is_written():
    assert TrainConfig().mean_teacher is None
    for name in builtin_recipes():  # a recipe without one writes what it wrote before
        recipe = load_recipe(name)
        assert recipe.train.mean_teacher is None and "mean_teacher" not in recipe_to_dict(recipe)["train"]
    assert recipe_from_dict(_with_teacher(None)).train.mean_teacher is None


def test_an_empty_mapping_switches_it_on_with_the_defaults():
    teacher = recipe_from_dict(_with_teacher({})).train.mean_teacher
    assert teacher == MeanTeacherConfig(ema=0.99, weight=1.0, rampup_epochs=0, noise=0.05, ship="student")


def test_a_mean_teacher_round_trips_through_yaml():
    settings = {"ema": 0.999, "weight": 0.5, "rampup_epochs": 30, "noise": 0.1, "ship": "teacher"}
    recipe = recipe_from_dict(_with_teacher(settings))
    assert recipe.train.mean_teacher == MeanTeacherConfig(0.999, 0.5, 30, 0.1, "teacher")
    data = recipe_to_dict(recipe)
    assert data["train"]["mean_teacher"] == settings
    assert recipe_from_dict(yaml.safe_load(yaml.safe_dump(data))) == recipe
    assert load_recipe("coarse_to_fine", {"mean_teacher": {"ema": 0.9}}).train.mean_teacher.ema == 0.9


@pytest.mark.parametrize("teacher, message", [
    ({"ema": 1.0}, r"mean_teacher\.ema must be a number in \[0, 1\)"),
    ({"ema": -0.1}, r"mean_teacher\.ema"),
    ({"ema": "0.99"}, r"mean_teacher\.ema"),
    ({"weight": -1}, r"mean_teacher\.weight must be a number >= 0"),
    ({"weight": float("nan")}, r"mean_teacher\.weight"),
    ({"weight": True}, r"mean_teacher\.weight"),
    ({"rampup_epochs": -1}, r"mean_teacher\.rampup_epochs must be an integer >= 0"),
    ({"rampup_epochs": 2.5}, r"mean_teacher\.rampup_epochs"),
    ({"noise": -0.05}, r"mean_teacher\.noise must be a number >= 0"),
    ({"noise": float("inf")}, r"mean_teacher\.noise"),
    ({"ship": "ema"}, r"mean_teacher\.ship must be one of \('student', 'teacher'\)"),
    ({"decay": 0.99}, r"mean_teacher: unknown keys \['decay'\]"),
    (True, r"mean_teacher: expected a mapping"),
])
def test_invalid_mean_teacher_settings_are_rejected_by_name(teacher, message):
    with pytest.raises(InputError, match=message):
        recipe_from_dict(_with_teacher(teacher))
