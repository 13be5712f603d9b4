"""The recipe schema: plain dataclasses, read from and written to YAML, validated on load.

A recipe names everything a method needs: intensity preprocessing, networks, stages (the
whole-volume stage and the crop stages, each with its network, sampler and input size, and
optionally its training phases), loss, optimiser, schedule and augmentation. A model directory
stores the resolved recipe (with the dataset statistics a z-score normalisation needs), so
prediction needs nothing else.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flareseg.errors import InputError
from flareseg.labels import BY_ID

BUILTIN_DIR = Path(__file__).parent


@dataclass(frozen=True)
class PreprocessConfig:
    """Intensity preprocessing (:func:`flareseg.preprocessing.intensity.intensity_map`).

    Attributes:
        normalization: ``"window"``: HU clipped to ``hu_window`` and scaled to [0, 1].
            ``"zscore"``: HU clipped to the ``percentiles`` of the training cases' labelled
            (foreground) voxels, minus their mean, over their standard deviation, as nnU-Net
            does for CT.
        hu_window: ``(low, high)`` HU of the ``"window"`` normalisation.
        percentiles: The clipping percentiles of ``"zscore"``.
        statistics: ``{"low", "high", "mean", "std"}`` in HU for ``"zscore"``: computed once by
            training from the training cases and stored with the model; None before.
    """

    normalization: str = "window"
    hu_window: tuple[float, float] = (-100.0, 300.0)
    percentiles: tuple[float, float] = (0.5, 99.5)
    statistics: dict[str, float] | None = None


#: Defaults of the registered networks' shape arguments (a test keeps them equal to the classes').
NETWORK_DEFAULTS = {"attention_dmfnet": {"levels": 4, "spatial_dims": 3},
                    "dual_unet": {"levels": 5, "spatial_dims": 2}, "resunet3d": {"levels": 4, "spatial_dims": 3},
                    "unet": {"levels": 7, "spatial_dims": 2}}


@dataclass(frozen=True)
class NetworkConfig:
    """A network from the registry (``flareseg.models.registry``) and its keyword arguments."""

    name: str = "resunet3d"
    kwargs: dict[str, Any] = field(default_factory=dict)

    def _setting(self, key: str) -> int:
        return int(self.kwargs.get(key, NETWORK_DEFAULTS.get(self.name, {}).get(key, 0)))

    @property
    def spatial_dims(self) -> int:
        """2 (slices) or 3 (volumes)."""
        return self._setting("spatial_dims")

    @property
    def size_multiple(self) -> int:
        """Network input sizes must be multiples of this (``2^levels``)."""
        return 2 ** self._setting("levels")


@dataclass(frozen=True)
class PseudoLossConfig:
    """The loss of the labels a teacher filled in (:func:`flareseg.training.losses.pseudo_label_loss`):
    a loss by name, usually one robust to wrong labels (``gce``, ``sce``, ``beta_ce``), its keyword
    arguments and its weight (>= 0) against the loss of the cases' own labels."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0


@dataclass(frozen=True)
class LossConfig:
    """A loss by name (:data:`flareseg.training.losses.LOSSES`: ``dice_ce``, ``dice``, ``gce``,
    ``sce``, ``beta_ce``) with its keyword arguments; ``deep_supervision`` weighs the outputs of a
    deep-supervised network (:func:`flareseg.training.losses.build_loss`). ``pseudo``, when given,
    trains what a teacher filled in (phases with ``pseudo_labels: true``, or those
    :func:`flareseg.training.pseudo_phases.student_recipe` makes) with a loss and weight of its
    own; the cases' own labels keep this loss. None: pseudo-labels train as real labels."""

    name: str = "dice_ce"
    kwargs: dict[str, Any] = field(default_factory=dict)
    deep_supervision: bool = False
    pseudo: PseudoLossConfig | None = None


@dataclass(frozen=True)
class PhaseConfig:
    """One training phase of a stage; each phase starts from the weights the previous one ended
    with, with a fresh optimiser and learning-rate schedule.

    Attributes:
        epochs: Epochs of the phase.
        learning_rate: Initial learning rate; None uses ``train.learning_rate``.
        optimizer: ``"adamw"`` or ``"sgd"``; None uses ``train.optimizer``.
        trainable: ``fnmatch`` patterns of parameter names that train; the others stay frozen.
            Empty: all parameters train.
        network: Keyword arguments that override the stage network's in this phase, and must
            keep its parameters (e.g. ``{skip: false}``). The last phase's are the ones prediction uses.
        cases: The label patterns of the cases the phase trains on
            (:data:`flareseg.datasets.layout.LABEL_PATTERNS`: ``all_organs``, ``some_organs``,
            ``organs_lesion``, ``lesion_only``, ``unlabelled``); empty: every labelled case.
        pseudo_labels: Fill what a case does not annotate (all of an unlabelled case) with a
            teacher model's prediction (``flareseg train --teacher MODEL_DIR``); ``train.loss.pseudo``
            may train those labels with a loss and weight of their own.
    """

    epochs: int
    learning_rate: float | None = None
    optimizer: str | None = None
    trainable: tuple[str, ...] = ()
    network: dict[str, Any] = field(default_factory=dict)
    cases: tuple[str, ...] = ()
    pseudo_labels: bool = False


@dataclass(frozen=True)
class StageConfig:
    """One network of a cascade.

    Attributes:
        name: Stage name; also the weights' file name in the model directory.
        labels: FLARE class ids the stage predicts; output channel ``i + 1`` is ``labels[i]``.
        size_zyx: Network input size in voxels, ``[z, y, x]`` (``[y, x]`` for ``slices_2d``);
            with ``spacing_mm``, the size of the training patches.
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
            twice it). An entry may be None (the scan's own spacing on that axis) and the
            first, ``"isotropic"`` (z resampled to the scan's in-plane spacing, as the 2D
            nnU-Net). None: resize to ``size_zyx``.
        network: The stage's network; None uses the recipe's ``network``.
        sampler: How the stage is trained and run, one of :data:`SAMPLERS`: ``whole_resize``
            and ``crop_resize`` (the scan or a crop resized to ``size_zyx``), ``spacing_patches``
            (resampled to ``spacing_mm``, random patches in training, the whole input at once in
            prediction), ``slices_2d`` (resampled to ``spacing_mm``, random 2D patches of slices
            in training, slice by slice in prediction, stacked back to 3D). None: from ``crop``
            and ``spacing_mm`` (:func:`resolve_sampler`).
        phases: Training phases (:class:`PhaseConfig`); empty: one phase of ``epochs`` with
            the ``train`` settings.
        foreground: Learn and predict ``labels`` as one class, "any of them" (two output
            channels: background, foreground), to find the region that holds them: only the
            first stage may, and the stages after it must refine every one of its labels. Its
            result only places their crops: one box around the whole foreground, for every
            crop (:func:`flareseg.inference.cascade.crop_boxes`). It trains on the cases that
            annotate all of its labels.
    """

    name: str
    labels: tuple[int, ...]
    size_zyx: tuple[int, ...]
    crop: str = "whole"
    margin_mm: float = 10.0
    epochs: int | None = None
    spacing_mm: tuple[float | str | None, float | None, float | None] | None = None
    network: NetworkConfig | None = None
    sampler: str | None = None
    phases: tuple[PhaseConfig, ...] = ()
    foreground: bool = False

    @property
    def channels(self) -> int:
        """Network output channels, background included: one per label, or two (``foreground``)."""
        return 2 if self.foreground else len(self.labels) + 1


@dataclass(frozen=True)
class MeanTeacherConfig:
    """A mean teacher (Tarvainen & Valpola, NeurIPS 2017; :mod:`flareseg.training.mean_teacher`):
    an exponential moving average of the student's weights whose softmax the student is trained
    to match on a differently perturbed view of the same batch.

    Attributes:
        ema: Decay of the moving average per optimiser step, in [0, 1): teacher = ema x teacher +
            (1 - ema) x student.
        weight: Weight (>= 0) of the consistency loss (mean squared error between the two softmax
            outputs) against the supervised loss.
        rampup_epochs: Epochs over which the weight ramps up as exp(-5 (1 - t)^2) at the start of
            each phase (>= 0; 0: the full weight from the first step).
        noise: Standard deviation (>= 0) of the Gaussian noise added to the teacher's view, in the
            network's input units ([0, 1] over the HU window with ``normalization: window``).
        ship: ``"student"`` or ``"teacher"``: the weights validated each epoch and shipped as the
            stage's best.
    """

    ema: float = 0.99
    weight: float = 1.0
    rampup_epochs: int = 0
    noise: float = 0.05
    ship: str = "student"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule, loss and augmentation settings; ``mean_teacher``, when given, adds a
    mean teacher's consistency loss (:class:`MeanTeacherConfig`)."""

    epochs: int = 40
    iterations_per_epoch: int = 50
    batch_size: int = 2
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "step"  # "step": multiply by lr_gamma every lr_step_epochs; "poly": (1 - e/E)^0.9
    lr_step_epochs: int = 20
    lr_gamma: float = 0.5
    optimizer: str = "adamw"  # "adamw", or "sgd": Nesterov momentum ``momentum``, as nnU-Net
    momentum: float = 0.99
    grad_clip: float | None = None  # clip the gradient norm to this (nnU-Net: 12); None: no clipping
    loss: LossConfig = LossConfig()
    # Kind -> probability per sample (flareseg.training.augment.build_augmentation); blur and
    # low_resolution as nnU-Net's per-sample probabilities. Kinds left out are off.
    augment: dict[str, float] = field(default_factory=lambda: {
        "affine": 0.8, "elastic": 0.2, "hu_shift": 0.2, "intensity": 0.5, "contrast": 0.3, "noise": 0.2,
        "blur": 0.2, "low_resolution": 0.25,
    })
    crop_jitter_mm: float = 10.0
    # Patches at batch positions >= round(batch_size * (1 - share)) (stages with spacing_mm) hold a
    # labelled voxel, as nnU-Net's oversampling of foreground (batch 2, 0.33: the second one)
    foreground_share: float = 0.33
    val_fraction: float = 0.2
    seed: int = 12345
    mean_teacher: MeanTeacherConfig | None = None


@dataclass(frozen=True)
class Recipe:
    """A whole method: preprocessing, network, stages, training and post-processing
    (``"largest_component"`` per class, or ``"none"``)."""

    name: str
    description: str
    preprocess: PreprocessConfig
    network: NetworkConfig
    stages: tuple[StageConfig, ...]
    train: TrainConfig
    postprocess: str = "largest_component"

    @property
    def class_ids(self) -> tuple[int, ...]:
        """Every class id the cascade can output, ascending."""
        return tuple(sorted({i for stage in self.stages for i in stage.labels}))

    def stage_network(self, stage: StageConfig, phase: int = -1) -> NetworkConfig:
        """The network a stage trains in ``phase`` (index; default the last, the one prediction
        runs): the stage's or the recipe's, with the phase's overrides."""
        network = stage.network or self.network
        overrides = stage.phases[phase].network if stage.phases else {}
        return NetworkConfig(network.name, {**network.kwargs, **overrides}) if overrides else network

    def phases(self, stage: StageConfig) -> tuple[PhaseConfig, ...]:
        """A stage's training phases, each complete (no None): its own, or one phase of
        ``stage.epochs`` (or ``train.epochs``) with the ``train`` settings."""
        train = self.train
        phases = stage.phases or (PhaseConfig(stage.epochs or train.epochs),)
        return tuple(dataclasses.replace(phase, learning_rate=phase.learning_rate or train.learning_rate,
                                         optimizer=phase.optimizer or train.optimizer) for phase in phases)


_CROPS = ("whole", "group", "each")
#: Stage samplers, each a training sampler and a prediction inferer (see :class:`StageConfig`).
SAMPLERS = ("whole_resize", "crop_resize", "spacing_patches", "slices_2d")
_SCHEDULES = ("step", "poly")
_OPTIMIZERS = ("adamw", "sgd")
_NORMALIZATIONS = ("window", "zscore")
_POSTPROCESS = ("largest_component", "none")
#: The weights a stage with a mean teacher ships (MeanTeacherConfig.ship).
_SHIPPED = ("student", "teacher")
#: flareseg.training.losses.LOSSES (a test keeps the two equal).
_LOSSES = ("dice_ce", "dice", "gce", "sce", "beta_ce")
#: Network arguments a phase may override: they switch behaviour and keep the parameters.
_PARAMETER_FREE = {"skip", "deep_supervision"}
#: flareseg.datasets.layout.LABEL_PATTERNS, not imported so that loading a recipe reads no dataset
#: code (a test keeps the two equal).
_LABEL_PATTERNS = ("all_organs", "some_organs", "organs_lesion", "lesion_only", "unlabelled")
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
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise InputError(f"{path}: cannot read recipe: {' '.join(str(error).split())}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a recipe is a YAML mapping")
    if overrides:
        data.setdefault("train", {}).update(overrides)
        if "epochs" in overrides:
            for stage in data.get("stages") or []:
                if isinstance(stage, dict):
                    stage.pop("epochs", None)
                    for phase in stage.get("phases") or []:
                        if isinstance(phase, dict):
                            phase["epochs"] = overrides["epochs"]
    return recipe_from_dict(data, source=str(path))


def resolve_sampler(stage: StageConfig, network: NetworkConfig) -> str:
    """A stage's sampler when it names none: ``slices_2d`` for a 2D network, ``spacing_patches``
    with ``spacing_mm``, else ``whole_resize`` or ``crop_resize`` by its ``crop``."""
    if network.spatial_dims == 2:
        return "slices_2d"
    if stage.spacing_mm is not None:
        return "spacing_patches"
    return "whole_resize" if stage.crop == "whole" else "crop_resize"


def _stage(data: Any, recipe_network: NetworkConfig, where: str) -> StageConfig:
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping, got {data!r}")
    data = dict(data)
    if data.get("network") is not None:
        data["network"] = _build(NetworkConfig, data["network"], f"{where}: network")
    if data.get("phases") is not None:
        if not isinstance(data["phases"], (list, tuple)):
            raise InputError(f"{where}: phases must be a list, got {data['phases']!r}")
        data["phases"] = tuple(_build(PhaseConfig, phase, f"{where}: phases") for phase in data["phases"])
    stage = _build(StageConfig, data, where)
    if stage.sampler is None:
        stage = dataclasses.replace(stage, sampler=resolve_sampler(stage, stage.network or recipe_network))
    return stage


def _train(data: Any, where: str) -> TrainConfig:
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping, got {data!r}")
    data = dict(data)
    loss = data.pop("loss", None) or {}
    if not isinstance(loss, dict):
        raise InputError(f"{where}: loss is a mapping {{name, kwargs, deep_supervision}}, got {loss!r}")
    loss = dict(loss)
    weights = {key: data.pop(key) for key in ("dice_weight", "ce_weight") if key in data}  # older recipes
    if weights:
        if loss.get("name", "dice_ce") != "dice_ce":
            raise InputError(f"{where}: dice_weight and ce_weight belong to the dice_ce loss")
        loss["kwargs"] = {**weights, **(loss.get("kwargs") or {})}
    if loss.get("pseudo") is not None:
        loss["pseudo"] = _build(PseudoLossConfig, loss["pseudo"], f"{where}: loss: pseudo")
    data["loss"] = _build(LossConfig, loss, f"{where}: loss")
    if data.get("mean_teacher") is not None:
        data["mean_teacher"] = _build(MeanTeacherConfig, data["mean_teacher"], f"{where}: mean_teacher")
    return _build(TrainConfig, data, where)


def recipe_from_dict(data: dict[str, Any], source: str = "recipe") -> Recipe:
    """Build and validate a recipe from plain data (as read from YAML)."""
    known = {f.name for f in dataclasses.fields(Recipe)}
    _reject_unknown(data, known, source)
    if not isinstance(data.get("stages", []), list):
        raise InputError(f"{source}: stages must be a list of stages, got {data['stages']!r}")
    try:
        network = _build(NetworkConfig, data.get("network", {}), f"{source}: network")
        recipe = Recipe(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            preprocess=_build(PreprocessConfig, data.get("preprocess", {}), f"{source}: preprocess"),
            network=network,
            stages=tuple(_stage(s, network, f"{source}: stages") for s in data["stages"]),
            train=_train(data.get("train", {}), f"{source}: train"),
            postprocess=data.get("postprocess", "largest_component"),
        )
    except KeyError as error:
        raise InputError(f"{source}: missing key {error}") from None
    _validate(recipe, source)
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """Plain data (lists, dicts, numbers) that ``recipe_from_dict`` reads back to an equal recipe;
    a stage's ``sampler``, ``network`` and ``phases``, the loss's ``pseudo`` and the training's
    ``mean_teacher`` only where they are not the defaults."""
    def plain(value):
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    data = plain(dataclasses.asdict(recipe))
    for stage, stage_data in zip(recipe.stages, data["stages"]):  # what a stage leaves to the defaults
        if stage.sampler == resolve_sampler(dataclasses.replace(stage, sampler=None), stage.network or recipe.network):
            del stage_data["sampler"]
        for key in ("network", "phases", "foreground"):
            if not stage_data[key]:
                del stage_data[key]
    if data["train"]["loss"]["pseudo"] is None:
        del data["train"]["loss"]["pseudo"]
    if data["train"]["mean_teacher"] is None:
        del data["train"]["mean_teacher"]
    return data


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping, got {data!r}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    _reject_unknown(data, set(names), where)
    values = {}
    for key, value in data.items():
        default = names[key].default
        values[key] = tuple(value) if isinstance(value, list) or (
            isinstance(default, tuple) and isinstance(value, (list, tuple))) else value
    try:
        return cls(**values)
    except TypeError as error:
        raise InputError(f"{where}: {error}") from None


def _reject_unknown(data: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"{where}: unknown keys {unknown}; expected some of {sorted(known)}")


def _validate(recipe: Recipe, source: str) -> None:
    _validate_preprocess(recipe.preprocess, source)
    if recipe.postprocess not in _POSTPROCESS:
        raise InputError(f"{source}: postprocess must be one of {_POSTPROCESS}, got {recipe.postprocess!r}")
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
        if stage.spacing_mm is not None:
            spacing = stage.spacing_mm
            if not isinstance(spacing, tuple) or len(spacing) != 3 or not all(
                    _is_size(v) or v is None or (axis == 0 and v == "isotropic") for axis, v in enumerate(spacing)):
                raise InputError(f"{where}: spacing_mm must be three voxel sizes in mm (0, 50] (or null: the "
                                 f"scan's; the first may be 'isotropic'), got {spacing!r}")
        _validate_stage_network(recipe, stage, where)
    _validate_foreground(recipe, source)
    train = recipe.train
    if train.optimizer not in _OPTIMIZERS:
        raise InputError(f"{source}: train.optimizer must be one of {_OPTIMIZERS}, got {train.optimizer!r}")
    if train.loss.name not in _LOSSES or not isinstance(train.loss.kwargs, dict):
        raise InputError(f"{source}: train.loss names one of {_LOSSES} with kwargs as a mapping, got {train.loss!r}")
    _validate_pseudo_loss(recipe, source)
    _validate_mean_teacher(train.mean_teacher, source)
    if not (_is_number(train.learning_rate) and train.learning_rate > 0):
        raise InputError(f"{source}: train.learning_rate must be a number > 0, got {train.learning_rate!r}")
    if train.grad_clip is not None and not (_is_number(train.grad_clip) and train.grad_clip > 0):
        raise InputError(f"{source}: train.grad_clip must be a number > 0 or null, got {train.grad_clip!r}")
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


def _validate_pseudo_loss(recipe: Recipe, source: str) -> None:
    pseudo = recipe.train.loss.pseudo
    if pseudo is None:
        return
    if pseudo.name not in _LOSSES or not isinstance(pseudo.kwargs, dict) or not (
            _is_number(pseudo.weight) and pseudo.weight >= 0):
        raise InputError(f"{source}: train.loss.pseudo names one of {_LOSSES} with kwargs as a mapping and a "
                         f"weight >= 0, got {pseudo!r}")


def _validate_mean_teacher(teacher: MeanTeacherConfig | None, source: str) -> None:
    if teacher is None:
        return
    where = f"{source}: train.mean_teacher"
    if not (_is_number(teacher.ema) and 0 <= teacher.ema < 1):
        raise InputError(f"{where}.ema must be a number in [0, 1), got {teacher.ema!r}")
    if not (_is_number(teacher.weight) and 0 <= teacher.weight < math.inf):
        raise InputError(f"{where}.weight must be a number >= 0, got {teacher.weight!r}")
    if not (isinstance(teacher.rampup_epochs, int) and not isinstance(teacher.rampup_epochs, bool)
            and teacher.rampup_epochs >= 0):
        raise InputError(f"{where}.rampup_epochs must be an integer >= 0, got {teacher.rampup_epochs!r}")
    if not (_is_number(teacher.noise) and 0 <= teacher.noise < math.inf):
        raise InputError(f"{where}.noise must be a number >= 0, got {teacher.noise!r}")
    if teacher.ship not in _SHIPPED:
        raise InputError(f"{where}.ship must be one of {_SHIPPED}, got {teacher.ship!r}")


def _is_size(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 50


def _ordered_pair(value, minimum: float = -math.inf, maximum: float = math.inf) -> bool:
    return (isinstance(value, tuple) and len(value) == 2 and all(_is_number(v) for v in value)
            and minimum <= value[0] < value[1] <= maximum)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _validate_preprocess(preprocess: PreprocessConfig, source: str) -> None:
    if preprocess.normalization not in _NORMALIZATIONS:
        raise InputError(f"{source}: preprocess.normalization must be one of {_NORMALIZATIONS}, "
                         f"got {preprocess.normalization!r}")
    if not _ordered_pair(preprocess.hu_window):
        raise InputError(f"{source}: preprocess.hu_window must be [low, high] HU with low < high, "
                         f"got {preprocess.hu_window!r}")
    if not _ordered_pair(preprocess.percentiles, 0, 100):
        raise InputError(f"{source}: preprocess.percentiles must be [low, high] with 0 <= low < high <= 100, "
                         f"got {preprocess.percentiles!r}")
    statistics = preprocess.statistics
    if statistics is not None and (not isinstance(statistics, dict) or set(statistics) != {"low", "high", "mean", "std"}
                                   or not statistics["std"] > 0):
        raise InputError(f"{source}: preprocess.statistics must hold low, high, mean and std > 0, got {statistics!r}")


def _validate_stage_network(recipe: Recipe, stage: StageConfig, where: str) -> None:
    """The stage's sampler, input size and phases against its network."""
    network = stage.network or recipe.network
    if stage.sampler not in SAMPLERS:
        raise InputError(f"{where}: sampler must be one of {SAMPLERS}, got {stage.sampler!r}")
    dims = 2 if stage.sampler == "slices_2d" else 3
    if network.spatial_dims != dims:
        raise InputError(f"{where}: sampler {stage.sampler} needs a {dims}D network, "
                         f"{network.name} is {network.spatial_dims}D")
    if stage.sampler == "spacing_patches" and stage.spacing_mm is None:
        raise InputError(f"{where}: sampler spacing_patches needs spacing_mm")
    if stage.sampler in ("whole_resize", "crop_resize") and (
            stage.spacing_mm is not None or (stage.crop == "whole") != (stage.sampler == "whole_resize")):
        raise InputError(f"{where}: sampler {stage.sampler} needs crop "
                         f"{'whole' if stage.sampler == 'whole_resize' else 'group or each'} and no spacing_mm")
    if len(stage.size_zyx) != dims or min(stage.size_zyx) < 8:
        raise InputError(f"{where}: size_zyx must be {dims} sizes >= 8, got {list(stage.size_zyx)}")
    if any(s % network.size_multiple for s in stage.size_zyx):
        raise InputError(f"{where}: each size must be divisible by 2^levels = {network.size_multiple}")
    if dims == 2 and isinstance(recipe.train.augment, dict) and recipe.train.augment.get("elastic", 0):
        raise InputError(f"{where}: the elastic augmentation is 3D only; a 2D stage needs train.augment.elastic 0")
    if network.name == "dual_unet":
        lesions = int(network.kwargs.get("lesion_channels", 1))
        if any(BY_ID[i].organ for i in stage.labels[-lesions:]) or not all(
                BY_ID[i].organ for i in stage.labels[:-lesions]):
            raise InputError(f"{where}: a dual_unet stage lists its organs, then its {lesions} lesion class(es) "
                             f"last, got {list(stage.labels)}")
    if stage.phases and stage.epochs is not None:
        raise InputError(f"{where}: a stage with phases sets epochs per phase, not epochs")
    for index, phase in enumerate(stage.phases):
        if not isinstance(phase.epochs, int) or isinstance(phase.epochs, bool) or phase.epochs < 1:
            raise InputError(f"{where}: phase {index + 1}: epochs must be a positive integer, got {phase.epochs!r}")
        if phase.learning_rate is not None and not (_is_number(phase.learning_rate) and phase.learning_rate > 0):
            raise InputError(f"{where}: phase {index + 1}: learning_rate must be a number > 0 (write 1e-4 as "
                             f"0.0001 or 1.0e-4 in YAML), got {phase.learning_rate!r}")
        if phase.optimizer is not None and phase.optimizer not in _OPTIMIZERS:
            raise InputError(f"{where}: phase {index + 1}: optimizer must be one of {_OPTIMIZERS}")
        if not isinstance(phase.network, dict) or not isinstance(phase.trainable, tuple) or not all(
                isinstance(p, str) for p in phase.trainable) or not isinstance(phase.cases, tuple):
            raise InputError(f"{where}: phase {index + 1}: network is a mapping, trainable and cases are lists")
        changed = sorted(set(phase.network) - _PARAMETER_FREE)
        if changed:
            raise InputError(f"{where}: phase {index + 1}: network overrides may only switch "
                             f"{sorted(_PARAMETER_FREE)} (they must keep the parameters), got {changed}")
        bad = [pattern for pattern in phase.cases if pattern not in _LABEL_PATTERNS]
        if bad or not isinstance(phase.pseudo_labels, bool):
            raise InputError(f"{where}: phase {index + 1}: cases are label patterns {_LABEL_PATTERNS} and "
                             f"pseudo_labels true or false, got {list(phase.cases)} and {phase.pseudo_labels!r}")
        if "unlabelled" in phase.cases and not phase.pseudo_labels:
            raise InputError(f"{where}: phase {index + 1}: unlabelled cases train only with pseudo_labels: true")


def _validate_foreground(recipe: Recipe, source: str) -> None:
    """A ``foreground`` stage is the first, and the stages after it refine all of its labels."""
    for index, stage in enumerate(recipe.stages):
        where = f"{source}: stage {stage.name!r}"
        if not isinstance(stage.foreground, bool):
            raise InputError(f"{where}: foreground must be true or false, got {stage.foreground!r}")
        if not stage.foreground:
            continue
        refined = {label for later in recipe.stages[index + 1:] for label in later.labels}
        if index or not set(stage.labels) <= refined:
            raise InputError(f"{where}: a foreground stage must be the first, and later stages must refine all "
                             f"of its labels (missing: {sorted(set(stage.labels) - refined)})")
        if any(phase.pseudo_labels for phase in stage.phases):  # its channels are not per class
            raise InputError(f"{where}: a foreground stage does not train on pseudo-labels yet")
