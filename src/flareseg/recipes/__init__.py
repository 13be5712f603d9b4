"""Recipes: a method of the FLARE papers as validated data (YAML), one schema for all."""

from flareseg.recipes.schema import (
    SAMPLERS,
    LossConfig,
    NetworkConfig,
    PhaseConfig,
    PreprocessConfig,
    Recipe,
    StageConfig,
    TrainConfig,
    builtin_recipes,
    load_recipe,
    recipe_from_dict,
    recipe_to_dict,
)

__all__ = [
    "SAMPLERS", "LossConfig", "NetworkConfig", "PhaseConfig", "PreprocessConfig", "Recipe", "StageConfig",
    "TrainConfig", "builtin_recipes", "load_recipe", "recipe_from_dict", "recipe_to_dict",
]
