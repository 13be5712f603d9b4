"""The cascade's geometry with stand-in networks: crop boxes, pasting, leftovers, clean-up."""

from __future__ import annotations

import numpy as np

from flareseg.inference.cascade import crop_boxes, segment_canonical
from flareseg.inference.model import LoadedModel
from flareseg.recipes import recipe_from_dict


def _recipe(stages, hu_window=(-100, 300)):
    return recipe_from_dict({"name": "t", "network": {"kwargs": {"levels": 2}}, "stages": stages,
                             "preprocess": {"hu_window": list(hu_window)}})


COARSE = {"name": "coarse", "labels": [1, 2, 9], "size_zyx": [16, 16, 16], "crop": "whole"}


def _coarse_runner(x):
    """Liver (channel 1) in coarse voxels [4:8, 4:12, 2:6], gallbladder (channel 3) in [12:14, 12:14, 12:14],
    plus one stray liver voxel that the clean-up must drop."""
    logits = np.zeros((1, 4, 16, 16, 16), np.float32)
    logits[0, 0] = 1
    logits[0, 1, 4:8, 4:12, 2:6] = 5
    logits[0, 1, 15, 15, 0] = 5
    logits[0, 3, 12:14, 12:14, 12:14] = 5
    return logits


def test_group_stage_refines_inside_the_coarse_box_with_its_margin():
    recipe = _recipe([COARSE, {"name": "large", "labels": [1], "size_zyx": [8, 8, 8], "crop": "group", "margin_mm": 4}])
    seen = []

    def fine(x):
        seen.append(x.shape)
        return np.stack([np.zeros(x.shape[2:]), np.ones(x.shape[2:])])[None].astype(np.float32)  # all liver

    model = LoadedModel(None, recipe, {"coarse": _coarse_runner, "large": fine}, "test")
    hu = np.zeros((32, 48, 64), np.int16)
    out = segment_canonical(hu, (2.0, 1.0, 1.0), model)
    assert seen == [(1, 1, 8, 8, 8)]
    # coarse box [4:8, 4:12, 2:6] on a 16^3 grid -> full grid x(2, 3, 4) = [8:16, 12:36, 8:24], margin 4 mm
    # = (2, 4, 4) voxels; the stray coarse voxel is gone, so it does not stretch the box.
    liver = np.argwhere(out == 1)
    assert liver.min(0).tolist() == [6, 8, 4] and (liver.max(0) + 1).tolist() == [18, 40, 28]
    # Gallbladder is refined by no fine stage: it comes from the coarse stage, resized.
    gallbladder = np.argwhere(out == 9)
    assert gallbladder.min(0).tolist() == [24, 36, 48] and (gallbladder.max(0) + 1).tolist() == [28, 42, 56]


def test_each_stage_crops_one_box_per_label_and_keeps_only_that_label():
    recipe = _recipe([COARSE, {"name": "small", "labels": [9, 1], "size_zyx": [8, 8, 8], "crop": "each", "margin_mm": 0}])
    coarse = np.argmax(_coarse_runner(None)[0], axis=0).choose([0, 1, 2, 9]).astype(np.uint8)
    boxes = crop_boxes(coarse, recipe.stages[1], (16, 16, 16), (1.0, 1.0, 1.0))
    assert [subset for subset, _ in boxes] == [(9,), (1,)]

    def fine(x):  # says "gallbladder" (channel 1) everywhere
        return np.stack([np.zeros(x.shape[2:]), np.ones(x.shape[2:]), np.zeros(x.shape[2:])])[None].astype(np.float32)

    model = LoadedModel(None, recipe, {"coarse": _coarse_runner, "small": fine}, "test")
    out = segment_canonical(np.zeros((16, 16, 16), np.int16), (1.0, 1.0, 1.0), model)
    # The liver crop's "gallbladder" answer is discarded: only the gallbladder box keeps class 9.
    assert np.argwhere(out == 9).min(0).tolist() == [12, 12, 12] and (out == 9).sum() == 8
    assert (out == 1).sum() == 0  # liver is refined by this stage, which never answered liver


def _bright_is_liver(x):
    """Stand-in coarse network: liver (channel 1) wherever the windowed input is bright."""
    return np.concatenate([np.full_like(x, 0.5), x], axis=1)


def _cube_dice(out, cube):
    liver = out == 1
    return 2 * np.count_nonzero(liver & cube) / (np.count_nonzero(liver) + np.count_nonzero(cube))


def test_a_fixed_spacing_coarse_stage_runs_the_whole_scan_and_finds_organs_in_any_field_of_view():
    coarse = {"name": "coarse", "labels": [1], "size_zyx": [8, 8, 8], "crop": "whole", "spacing_mm": [4, 4, 4]}
    recipe = _recipe([coarse], hu_window=(-1100, 300))  # levels 2: sizes are multiples of 4; air = 100 / 1400
    seen = []

    def runner(x):
        seen.append(x)
        return _bright_is_liver(x)

    model = LoadedModel(None, recipe, {"coarse": runner}, "test")
    hu = np.full((30, 50, 70), -1000, np.int16)
    hu[8:24, 12:36, 20:48] = 300  # a bright organ: window [-1100, 300] -> 1.0
    cube = hu == 300
    out = segment_canonical(hu, (2.0, 1.0, 1.0), model)
    # 30x50x70 voxels of 2x1x1 mm at 4 mm: round(15, 12.5, 17.5) = (15, 12, 18), padded with air to (16, 12, 20).
    assert seen[0].shape == (1, 1, 16, 12, 20)
    air = np.float32(100 / 1400)
    assert np.allclose(seen[0][0, 0, 15], air) and np.allclose(seen[0][0, 0, :, :, 18:], air)  # air pads
    assert _cube_dice(out, cube) > 0.8
    for cut in (slice(0, 20), slice(10, 30), slice(12, 18)):  # fields of view cut at either end, a slab
        part = segment_canonical(np.ascontiguousarray(hu[cut]), (2.0, 1.0, 1.0), model)
        assert _cube_dice(part, cube[cut]) > 0.8, cut


def test_a_fine_stage_at_a_fixed_spacing_runs_its_whole_crop_at_that_spacing():
    coarse = {"name": "coarse", "labels": [1], "size_zyx": [8, 8, 8], "crop": "whole", "spacing_mm": [4, 4, 4]}
    fine = {"name": "large", "labels": [1], "size_zyx": [8, 8, 8], "crop": "group", "margin_mm": 4,
            "spacing_mm": [2, 2, 2]}
    seen = []

    def fine_runner(x):
        seen.append(x.shape)
        return _bright_is_liver(x)

    model = LoadedModel(None, _recipe([coarse, fine]), {"coarse": _bright_is_liver, "large": fine_runner}, "test")
    hu = np.full((30, 50, 70), -1000, np.int16)
    hu[8:24, 12:36, 20:48] = 300
    out = segment_canonical(hu, (2.0, 1.0, 1.0), model)
    # The coarse box, grown by 4 mm and clipped to the scan, at 2 mm: about 20 x 16 x 18 voxels,
    # padded with air to multiples of 4.
    assert len(seen) == 1 and all(n % 4 == 0 for n in seen[0][2:])
    assert 16 <= seen[0][2] <= 24 and 12 <= seen[0][3] <= 20 and 16 <= seen[0][4] <= 24
    assert _cube_dice(out, hu == 300) > 0.9
