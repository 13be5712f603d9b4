"""Stage samples: each labelled case preprocessed once per stage, at the stage's input size,
and cached as ``.npz`` so that epochs never re-decode NIfTI.

A sample is ``image`` (float16 ``[D, H, W]`` in [0, 1]), ``label`` (uint8 channel indices of
the stage; 0 for background *and* for classes not annotated in the case; ``C + j`` for the
case's merged label ``j``), ``annotated`` (bool ``[C]``, channel 0 included) and ``sets``
(bool ``[K, C]``: the channels merged label ``j`` stands for; see
:func:`flareseg.training.losses.dice_ce_loss`). Crop stages store ``crops_per_case`` crops per label
subset, each with a random margin jitter, as the coarse stage's boxes vary at prediction.
A stage with ``spacing_mm`` stores the whole scan or its crops resampled to that spacing
(any shape); training takes random patches of them (:mod:`flareseg.training.patches`). A
scan of a few slices (:data:`MIN_RESIZED_SLICES`) trains only such stages.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flareseg.datasets.layout import Case
from flareseg.errors import InputError
from flareseg.io import read_ct, read_volume
from flareseg.io.atomic import atomic_path
from flareseg.preprocessing.crop import crop
from flareseg.preprocessing.intensity import intensity_map
from flareseg.preprocessing.orientation import align_to, to_canonical
from flareseg.preprocessing.resample import resize
from flareseg.preprocessing.stage_grid import (RESIZED, annotated_channels, crop_subsets, margin_box, stage_shape,
                                               subset_box)
from flareseg.recipes import Recipe, StageConfig
from flareseg.training.patches import axial_slab


#: A voxel no loss may train on, in a FLARE-id label map and in a sample's label alike (a class a
#: pseudo-label selection dropped from a case; :func:`flareseg.training.pseudo_labels.read_stored`).
#: Never a FLARE id, a merged code or a stage channel.
IGNORED = 255
#: Bumped when the layout of cached samples changes, so that old caches are rebuilt.
CACHE_VERSION = 3
#: A scan or crop with fewer slices than this along an axis (a few-slice label) trains only the
#: stages at a fixed spacing: resizing it to a stage's input size would stretch it many times over.
MIN_RESIZED_SLICES = 4


@dataclass(frozen=True)
class Sample:
    """One stage sample (see the module's description). ``own_annotated`` (bool ``[C]``), set on
    pseudo-labelled samples only, holds the channels the case annotates itself; the others of
    ``annotated`` are a teacher's (:func:`flareseg.training.pseudo_labels.mark_own_annotation`).
    None: the case annotates all of ``annotated`` itself."""

    case_id: str
    image: np.ndarray
    label: np.ndarray
    annotated: np.ndarray
    sets: np.ndarray
    own_annotated: np.ndarray | None = None


def stage_key(recipe: Recipe, stage: StageConfig, crops_per_case: int) -> str:
    """Hash of everything that determines a stage's cached samples."""
    text = json.dumps([CACHE_VERSION, dataclasses.asdict(recipe.preprocess), stage.labels, stage.size_zyx,
                       stage.crop, stage.margin_mm, recipe.train.crop_jitter_mm, recipe.train.seed, crops_per_case,
                       stage.sampler, stage.spacing_mm]
                      + ([recipe.train.augment.get("field_of_view", 0.0)] if stage.crop != "whole" else [])
                      + (["foreground"] if stage.foreground else []),
                      default=list)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def read_case(case: Case) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Read a labelled case in canonical orientation.

    Returns:
        The HU array ``[z, y, x]``; the label map on the same grid as FLARE ids (uint8,
        translated from the dataset's numbering by ``case.mapping``); spacing ``(z, y, x)`` in mm.

    Raises:
        InputError: The label holds a value that ``dataset.json`` does not declare.
    """
    ct = read_ct(case.image)
    label = align_to(read_volume(case.label), ct.geometry)
    ct_canonical, _ = to_canonical(ct)
    label_canonical, _ = to_canonical(label)
    try:
        flare_ids = case.mapping.translate(label_canonical.array)
    except InputError as error:
        raise InputError(f"{case.label}: {error}") from None
    return ct_canonical.array, flare_ids, ct_canonical.geometry.spacing_zyx_mm


def channel_lookup(stage: StageConfig, annotated: tuple[int, ...]) -> np.ndarray:
    """uint8 table: FLARE id -> stage channel (0 for other classes and unannotated ones; 1 for
    every label of a ``foreground`` stage; :data:`IGNORED` stays itself)."""
    lookup = np.zeros(256, np.uint8)
    lookup[IGNORED] = IGNORED
    for channel, class_id in enumerate(stage.labels, start=1):
        if class_id in annotated:
            lookup[class_id] = 1 if stage.foreground else channel
    return lookup


def merged_targets(stage: StageConfig, annotated: tuple[int, ...], merged: dict[int, tuple[int, ...]],
                   lookup: np.ndarray) -> np.ndarray:
    """Give each merged label of a case its stage target; returns the channel sets ``[K, C]``.

    A merged label stands, in this stage, for its annotated members among the stage's labels
    and, when some member lies outside them, for background too. A set of one channel is that
    channel; a larger set ``j`` becomes target ``C + j``. ``lookup`` is updated in place.
    """
    channels = stage.channels
    sets = []
    for code, members in sorted(merged.items()):
        chosen = {int(lookup[i]) for i in members if i in stage.labels and i in annotated}
        if any(i not in stage.labels or i not in annotated for i in members):
            chosen.add(0)
        if len(chosen) == 1:
            lookup[code] = chosen.pop()
            continue
        lookup[code] = channels + len(sets)
        sets.append([c in chosen for c in range(channels)])
    return np.array(sets, bool).reshape(len(sets), channels)


def case_samples(hu, label, spacing_zyx_mm, case: Case, stage: StageConfig, recipe: Recipe,
                 rng: np.random.Generator, crops_per_case: int) -> list[Sample]:
    """The samples of one case for one stage (none when the case annotates none of its classes, or
    not all of them for a ``foreground`` stage)."""
    annotated_ids = tuple(i for i in stage.labels if i in case.annotated)
    annotated = annotated_channels(stage, annotated_ids)
    resized = stage.sampler in RESIZED
    if not annotated[1:].any() or (resized and min(hu.shape) < MIN_RESIZED_SLICES):
        return []
    lookup = channel_lookup(stage, annotated_ids)
    present = np.bincount(label.ravel(), minlength=256) > 0
    merged = {code: members for code, members in case.mapping.merged.items() if present[code]}  # drawn in this case
    sets = merged_targets(stage, annotated_ids, merged, lookup)
    normalise = intensity_map(recipe.preprocess).apply

    def make(hu_part, label_part):
        shape = stage_shape(hu_part.shape, spacing_zyx_mm, stage)  # patches of fixed-spacing stages come later
        image = normalise(resize(hu_part, shape, order=1)).astype(np.float16)
        return Sample(case.case_id, image, resize(lookup[label_part], shape, order=0), annotated, sets)

    if stage.crop == "whole":
        return [make(hu, label)]
    field_of_view = float(recipe.train.augment.get("field_of_view", 0.0))
    samples = []
    for subset in crop_subsets(stage):
        wanted = [i for i in subset if i in annotated_ids]
        wanted += [code for code, members in merged.items() if set(members) & set(wanted)]
        box = subset_box(label, wanted)
        if box is None:
            continue
        for _ in range(crops_per_case):
            margin_mm = stage.margin_mm + rng.uniform(-1, 1, 3) * recipe.train.crop_jitter_mm
            jittered = margin_box(box, margin_mm, spacing_zyx_mm, hu.shape)
            if field_of_view and rng.random() < field_of_view:  # the scan ends inside the group
                jittered = axial_slab(jittered, rng)
            if resized and min(jittered.shape) < MIN_RESIZED_SLICES:
                continue
            samples.append(make(crop(hu, jittered), crop(label, jittered)))
    return samples


def case_signature(case: Case) -> str:
    """What a case's cached samples depend on besides the recipe: its files and label meaning."""
    entries = [(e.name, e.value, e.class_id, e.members) for e in case.mapping.entries]
    return json.dumps([case.image.name, case.label.name if case.label else None, case.annotated, entries])


def cache_samples(cases: list[Case], recipe: Recipe, cache_dir: Path, crops_per_case: int = 4,
                  progress: bool = True, reader=read_case, signature=None) -> dict[str, Path]:
    """Build the missing ``.npz`` samples of every stage, reading each case once for all stages
    (with ``reader``, :func:`read_case` or another with its signature, e.g. pseudo-labels; a cached
    case is rebuilt when ``signature(case)``, default :func:`case_signature`, changes).

    Returns:
        The cache folder of each stage (named by stage and :func:`stage_key`).
    """
    from tqdm import tqdm

    folders = {stage.name: Path(cache_dir) / f"{stage.name}-{stage_key(recipe, stage, crops_per_case)}"
               for stage in recipe.stages}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for index, case in enumerate(tqdm(cases, desc="preprocess", unit="case", leave=False, disable=not progress)):
        signed = (signature or case_signature)(case)
        missing = [stage for stage in recipe.stages
                   if _signature(folders[stage.name] / f"{case.case_id}.npz") != signed]
        if not missing:
            continue
        hu, label, spacing = reader(case)
        for stage in missing:
            rng = np.random.default_rng([recipe.train.seed, index])
            built = case_samples(hu, label, spacing, case, stage, recipe, rng, crops_per_case)
            _save(folders[stage.name] / f"{case.case_id}.npz", built, signed)
    return folders


def load_samples(cases: list[Case], folder: Path) -> list[Sample]:
    """The cached samples of ``cases`` in one stage's cache folder."""
    return [sample for case in cases for sample in _load(Path(folder) / f"{case.case_id}.npz", case.case_id)]


def _save(path: Path, samples: list[Sample], signature: str) -> None:
    arrays = {}
    for i, s in enumerate(samples):
        arrays.update({f"image{i}": s.image, f"label{i}": s.label, f"annotated{i}": s.annotated, f"sets{i}": s.sets})
    with atomic_path(path) as temporary:  # keeps ".npz", which np.savez would otherwise add
        np.savez(temporary, count=len(samples), signature=signature, **arrays)


def _signature(path: Path) -> str | None:
    """The case signature a cached file was built for; None when there is no usable file."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            return str(data["signature"])
    except (OSError, KeyError, ValueError):
        return None


def _load(path: Path, case_id: str) -> list[Sample]:
    with np.load(path) as data:
        return [Sample(case_id, data[f"image{i}"], data[f"label{i}"], data[f"annotated{i}"], data[f"sets{i}"])
                for i in range(int(data["count"]))]
