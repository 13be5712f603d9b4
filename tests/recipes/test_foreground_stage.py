"""A ``foreground`` stage: its labels learnt and predicted as one class, whose region places the
crops of the stages after it (schema, channels, training targets, crop boxes, the cascade)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from flareseg.datasets.layout import Case
from flareseg.errors import InputError
from flareseg.inference.cascade import crop_boxes, segment_canonical
from flareseg.inference.model import LoadedModel
from flareseg.preprocessing.crop import Box
from flareseg.preprocessing.stage_grid import FOREGROUND, annotated_channels, channel_ids
from flareseg.recipes import load_recipe, recipe_from_dict, recipe_to_dict
from flareseg.training.samples import case_samples, channel_lookup, merged_targets

REGION = {"name": "region", "labels": [1, 2, 9], "size_zyx": [16, 16, 16], "crop": "whole", "foreground": True}
ORGANS = {"name": "organs", "labels": [1, 2, 9], "size_zyx": [8, 8, 8], "crop": "group", "margin_mm": 2}


def _recipe(stages):
    return recipe_from_dict({"name": "t", "network": {"kwargs": {"levels": 2}}, "stages": stages})


def test_the_attention_dmfnet_recipe_finds_the_region_of_all_organs_then_the_organs():
    recipe = load_recipe("attention_dmfnet")
    region, organs = recipe.stages
    assert region.foreground and region.channels == 2 and region.labels == tuple(range(1, 14))
    assert not organs.foreground and organs.channels == 14 and organs.crop == "group"
    data = recipe_to_dict(recipe)
    assert data["stages"][0]["foreground"] is True and "foreground" not in data["stages"][1]
    assert recipe_from_dict(yaml.safe_load(yaml.safe_dump(data))) == recipe
    # other recipes' resolved form is unchanged: no foreground key
    assert all("foreground" not in stage for stage in recipe_to_dict(load_recipe("coarse_to_fine"))["stages"])


@pytest.mark.parametrize("stages, message", [
    ([{**REGION, "foreground": False}, {**ORGANS, "crop": "whole", "foreground": True}], "must be the first"),
    ([REGION, {**ORGANS, "labels": [1, 2]}], r"missing: \[9\]"),
    ([REGION], "must be the first, and later stages"),
    ([{**REGION, "foreground": "yes"}, ORGANS], "true or false"),
    ([{**REGION, "phases": [{"epochs": 1, "pseudo_labels": True}]}, ORGANS], "pseudo-labels"),
])
def test_a_foreground_stage_is_first_and_refined_by_later_stages(stages, message):
    with pytest.raises(InputError, match=message):
        _recipe(stages)


def test_channels_and_their_annotation_by_hand():
    region, organs = _recipe([REGION, ORGANS]).stages
    assert channel_ids(region).tolist() == [0, FOREGROUND] and channel_ids(organs).tolist() == [0, 1, 2, 9]
    assert annotated_channels(region, (1, 2, 9, 14)).tolist() == [True, True]
    assert annotated_channels(region, (1, 2)).tolist() == [True, False]  # its background could hide a 9
    assert annotated_channels(organs, (1, 9)).tolist() == [True, True, False, True]
    lookup = channel_lookup(region, (1, 2, 9))
    assert lookup[[0, 1, 2, 9, 5]].tolist() == [0, 1, 1, 1, 0]
    # a merged label of two stage classes is foreground; with a member outside the stage, "either"
    assert merged_targets(region, (1, 2, 9), {200: (1, 2)}, lookup).shape == (0, 2) and lookup[200] == 1
    sets = merged_targets(region, (1, 2, 9), {201: (2, 11)}, lookup)
    assert lookup[201] == 2 and sets.tolist() == [[True, True]]


def test_training_targets_are_one_foreground_class_from_cases_that_annotate_every_label():
    recipe = _recipe([REGION, ORGANS])
    region = recipe.stages[0]
    hu = np.zeros((16, 16, 16), np.int16)
    label = np.zeros((16, 16, 16), np.uint8)
    label[2:6, 2:6, 2:6], label[8:10, 8:12, 8:12], label[12, 12, 12] = 1, 2, 9

    def samples(annotated):
        case = Case("c", Path("c_0000.nii.gz"), Path("c.nii.gz"), annotated)
        return case_samples(hu, label, (1.0, 1.0, 1.0), case, region, recipe, np.random.default_rng(0), 1)

    (sample,) = samples((1, 2, 9))
    assert sample.label.tolist() == (label > 0).astype(np.uint8).tolist()
    assert sample.annotated.tolist() == [True, True] and sample.sets.shape == (0, 2)
    assert samples((1, 2)) == []  # a case annotating some of the labels cannot say where the others are not


def test_every_crop_is_the_foreground_box_with_the_stages_margin():
    coarse = np.zeros((16, 16, 16), np.uint8)
    coarse[4:8, 2:10, 6:12] = FOREGROUND
    recipe = _recipe([REGION, ORGANS, {**ORGANS, "name": "each", "crop": "each"}])
    # coarse grid x2 on the full grid: [8:16, 4:20, 12:24]; 2 mm margin at 1 x 0.5 x 0.5 mm = (2, 4, 4) voxels
    box = Box((6, 0, 8), (18, 24, 28))
    for second_chance in (False, True):
        assert crop_boxes(coarse, recipe.stages[1], (32, 32, 32), (1.0, 0.5, 0.5), None, second_chance) == [
            ((1, 2, 9), box)]
    assert crop_boxes(coarse, recipe.stages[2], (32, 32, 32), (1.0, 0.5, 0.5)) == [((1,), box), ((2,), box),
                                                                                    ((9,), box)]
    assert crop_boxes(np.zeros_like(coarse), recipe.stages[1], (32, 32, 32), (1.0, 0.5, 0.5)) == []


def test_the_cascade_refines_the_organs_inside_the_largest_foreground_region():
    recipe = _recipe([REGION, ORGANS])
    seen = []

    def region(x):  # foreground (channel 1) in coarse voxels [4:8, 4:12, 2:6], and one stray voxel
        logits = np.zeros((1, 2, 16, 16, 16), np.float32)
        logits[0, 1, 4:8, 4:12, 2:6] = 5
        logits[0, 1, 15, 15, 15] = 5
        return logits

    def organs(x):  # gallbladder (channel 3) everywhere
        seen.append(x.shape)
        logits = np.zeros((1, 4, *x.shape[2:]), np.float32)
        logits[0, 3] = 1
        return logits

    model = LoadedModel(None, recipe, {"region": region, "organs": organs}, "test")
    out = segment_canonical(np.zeros((32, 32, 32), np.int16), (1.0, 1.0, 1.0), model)
    assert seen == [(1, 1, 8, 8, 8)]
    assert set(np.unique(out).tolist()) == {0, 9}  # never the foreground value itself
    # coarse box [4:8, 4:12, 2:6] x2 = [8:16, 8:24, 4:12], 2 mm margin; the stray voxel is dropped
    gallbladder = np.argwhere(out == 9)
    assert gallbladder.min(0).tolist() == [6, 6, 2] and (gallbladder.max(0) + 1).tolist() == [18, 26, 14]
