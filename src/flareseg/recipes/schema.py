"""The recipe schema: plain dataclasses, read from and written to YAML, validated on load.

A recipe names everything a method needs: intensity window, network, stages (the coarse
whole-volume stage and the fine organ-group stages, with their input sizes), loss,
optimiser, schedule and augmentation. A model directory stores the resolved recipe, so
prediction needs nothing else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flareseg.errors import InputError
from flareseg.labels import BY_ID

BUILTIN_DIR = Path(__file__).parent


@dataclass(frozen=True)
class PreprocessConfig:
    """Intensity preprocessing: clip HU to ``hu_window`` and scale it to [0, 1]."""

    hu_window: tuple[float, float] = (-100.0, 300.0)


@dataclass(frozen=True)
class NetworkConfig:
    """A network from the registry (``flareseg.models.registry``) and its keyword arguments."""

    name: str = "resunet3d"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StageConfig:
    """One network of a cascade.

    Attributes:
        name: Stage name; also the weights' file name in the model directory.
        labels: FLARE class ids the stage predicts; output channel ``i + 1`` is ``labels[i]``.
        size_zyx: Network input size in voxels, ``[z, y, x]``; with ``spacing_mm``, the size
            of the training patches.
        crop: ``"whole"`` (the whole volume is resized to ``size_zyx``), ``"group"`` (one crop
            around all ``labels`` of the previous stage's result) or ``"each"`` (one crop per
            label, refined one by one).
        margin_mm: Margin around a crop's bounding box, in mm.
        epochs: Training epochs of this stage; None uses ``train.epochs``. An ``epochs``
            override (``--epochs``) clears it; see :func:`load_recipe`.
        spacing_mm: Voxel size ``[z, y, x]`` in mm: the stage's input (the whole volume, or
            a crop) is resampled to it instead of resized to ``size_zyx``, so an organ's size
            and context in voxels do not depend on the field of view or on the crop's extent.
            Training takes random ``size_zyx`` patches of it; prediction runs the whole
            resampled input at once, padded with air to a multiple of ``2^levels`` (at least
            twice it). None: resize to ``size_zyx``.
    """

    name: str
    labels: tuple[int, ...]
    size_zyx: tuple[int, int, int]
    crop: str = "whole"
    margin_mm: float = 10.0
    epochs: int | None = None
    spacing_mm: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule, loss and augmentation settings."""

    epochs: int = 40
    iterations_per_epoch: int = 50
    batch_size: int = 2
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "step"  # "step": multiply by lr_gamma every lr_step_epochs; "poly": (1 - e/E)^0.9
    lr_step_epochs: int = 20
    lr_gamma: float = 0.5
    dice_weight: float = 1.0
    ce_weight: float = 1.0
    # Kind -> probability per sample (flareseg.training.augment.build_augmentation); blur and
    # low_resolution as nnU-Net's per-sample probabilities. Kinds left out are off.
    augment: dict[str, float] = field(default_factory=lambda: {
        "affine": 0.8, "elastic": 0.2, "hu_shift": 0.2, "intensity": 0.5, "contrast": 0.3, "noise": 0.2,
        "blur": 0.2, "low_resolution": 0.25,
    })
    crop_jitter_mm: float = 10.0
    foreground_share: float = 0.33  # patches (stages with spacing_mm) that hold a labelled voxel, as nnU-Net
    val_fraction: float = 0.2
    seed: int = 12345


@dataclass(frozen=True)
class Recipe:
    """A whole method: preprocessing, network, stages and training."""

    name: str
    description: str
    preprocess: PreprocessConfig
    network: NetworkConfig
    stages: tuple[StageConfig, ...]
    train: TrainConfig

    @property
    def class_ids(self) -> tuple[int, ...]:
        """Every class id the cascade can output, ascending."""
        return tuple(sorted({i for stage in self.stages for i in stage.labels}))

    @property
    def size_multiple(self) -> int:
        """Network input sizes must be multiples of this (``2^levels``)."""
        return 2 ** int(self.network.kwargs.get("levels", 4))


_CROPS = ("whole", "group", "each")
_SCHEDULES = ("step", "poly")
#: flareseg.training.augment.KINDS + PATCH_KINDS, not imported so that loading a recipe needs
#: no training code (a test keeps the two equal).
_AUGMENT_KINDS = ("affine", "elastic", "hu_shift", "intensity", "contrast", "noise", "blur", "low_resolution",
                  "field_of_view")


def builtin_recipes() -> list[str]:
    """Names of the recipes shipped with flareseg."""
    return sorted(path.stem for path in BUILTIN_DIR.glob("*.yaml"))


def load_recipe(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Load a built-in recipe by name, or a YAML file, and apply ``train`` overrides.

    An ``epochs`` override sets the epochs of every stage: it also replaces the ``epochs``
    a stage sets itself (they become None, i.e. ``train.epochs``), so the resolved recipe
    says how many epochs each stage runs.

    Raises:
        InputError: Unknown name, unreadable YAML, unknown keys or invalid values.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = BUILTIN_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise InputError(f"unknown recipe {name_or_path!r}; built-in recipes: {', '.join(builtin_recipes())}")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"{path}: cannot read recipe: {error}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a recipe is a YAML mapping")
    if overrides:
        data.setdefault("train", {}).update(overrides)
        if "epochs" in overrides:
            for stage in data.get("stages") or []:
                if isinstance(stage, dict):
                    stage.pop("epochs", None)
    return recipe_from_dict(data, source=str(path))


def recipe_from_dict(data: dict[str, Any], source: str = "recipe") -> Recipe:
    """Build and validate a recipe from plain data (as read from YAML)."""
    known = {f.name for f in dataclasses.fields(Recipe)}
    _reject_unknown(data, known, source)
    try:
        recipe = Recipe(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            preprocess=_build(PreprocessConfig, data.get("preprocess", {}), f"{source}: preprocess"),
            network=_build(NetworkConfig, data.get("network", {}), f"{source}: network"),
            stages=tuple(_build(StageConfig, s, f"{source}: stages") for s in data["stages"]),
            train=_build(TrainConfig, data.get("train", {}), f"{source}: train"),
        )
    except KeyError as error:
        raise InputError(f"{source}: missing key {error}") from None
    _validate(recipe, source)
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """Plain data (lists, dicts, numbers) that ``recipe_from_dict`` reads back to an equal recipe."""
    def plain(value):
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(recipe))


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping, got {data!r}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    _reject_unknown(data, set(names), where)
    values = {}
    for key, value in data.items():
        default = names[key].default
        values[key] = tuple(value) if isinstance(value, list) or isinstance(default, tuple) else value
    try:
        return cls(**values)
    except TypeError as error:
        raise InputError(f"{where}: {error}") from None


def _reject_unknown(data: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"{where}: unknown keys {unknown}; expected some of {sorted(known)}")


def _validate(recipe: Recipe, source: str) -> None:
    if not recipe.stages or recipe.stages[0].crop != "whole":
        raise InputError(f"{source}: the first stage must take the whole volume (crop: whole)")
    names = [stage.name for stage in recipe.stages]
    if len(set(names)) != len(names):
        raise InputError(f"{source}: stage names must be unique, got {names}")
    for stage in recipe.stages:
        where = f"{source}: stage {stage.name!r}"
        if stage.crop not in _CROPS:
            raise InputError(f"{where}: crop must be one of {_CROPS}, got {stage.crop!r}")
        bad = [i for i in stage.labels if i not in BY_ID]
        if bad or not stage.labels or len(set(stage.labels)) != len(stage.labels):
            raise InputError(f"{where}: labels must be distinct FLARE ids 1..14, got {list(stage.labels)}")
        if stage.epochs is not None and (not isinstance(stage.epochs, int) or stage.epochs < 1):
            raise InputError(f"{where}: epochs must be a positive integer or absent, got {stage.epochs!r}")
        if len(stage.size_zyx) != 3 or min(stage.size_zyx) < 8:
            raise InputError(f"{where}: size_zyx must be three sizes >= 8, got {list(stage.size_zyx)}")
        if any(s % recipe.size_multiple for s in stage.size_zyx):
            raise InputError(f"{where}: each size must be divisible by 2^levels = {recipe.size_multiple}")
        if stage.spacing_mm is not None:
            spacing = stage.spacing_mm
            if not isinstance(spacing, tuple) or len(spacing) != 3 or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 50 for v in spacing):
                raise InputError(f"{where}: spacing_mm must be three voxel sizes in mm (0, 50], got {spacing!r}")
    train = recipe.train
    if train.schedule not in _SCHEDULES:
        raise InputError(f"{source}: train.schedule must be one of {_SCHEDULES}, got {train.schedule!r}")
    if train.epochs < 1 or train.iterations_per_epoch < 1 or train.batch_size < 1:
        raise InputError(f"{source}: epochs, iterations_per_epoch and batch_size must be >= 1")
    if not isinstance(train.foreground_share, (int, float)) or not 0 <= train.foreground_share <= 1:
        raise InputError(f"{source}: train.foreground_share must be in [0, 1]")
    known = _AUGMENT_KINDS
    bad = {k: v for k, v in train.augment.items()
           if k not in known or not isinstance(v, (int, float)) or not 0 <= v <= 1} if isinstance(train.augment, dict) else 1
    if bad:
        raise InputError(f"{source}: train.augment maps some of {list(known)} to probabilities in [0, 1], "
                         f"got {train.augment!r}")
    if not 0 <= train.val_fraction < 1:
        raise InputError(f"{source}: train.val_fraction must be in [0, 1)")
