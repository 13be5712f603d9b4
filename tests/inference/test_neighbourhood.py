"""Search boxes for organs the coarse stage missed: boxes computed by hand from the table, and
the table checked against the organs of a real scan."""

from __future__ import annotations

import numpy as np

from flareseg.inference.neighbourhood import NEIGHBOURHOOD, search_box, union
from flareseg.io import read_volume
from flareseg.labels import ORGAN_IDS
from flareseg.preprocessing.crop import Box, bounding_box
from flareseg.preprocessing.orientation import to_canonical

KIDNEY = Box((10, 40, 20), (40, 70, 50))  # z 30, y 30, x 30 voxels


def test_the_right_adrenal_is_sought_above_the_medial_half_of_the_right_kidney():
    # Upper third z 30..40, anterior two thirds y 40..60, medial (patient-left) half x 35..50;
    # grown by 20 mm = (10, 20, 20) voxels at (2, 1, 1) mm; within 100 mm = (50, 100, 100) voxels.
    box = search_box(7, {2: KIDNEY}, (2.0, 1.0, 1.0), (60, 100, 100))
    assert box == Box((20, 20, 15), (50, 80, 70))


def test_the_left_adrenal_is_sought_above_the_medial_half_of_the_left_kidney():
    # As the right one, mirrored: the left kidney's medial half is its patient-right half, x 60..75.
    box = search_box(8, {13: Box((10, 40, 60), (40, 70, 90))}, (2.0, 1.0, 1.0), (60, 100, 100))
    assert box == Box((20, 20, 40), (50, 80, 95))


def test_the_first_neighbour_found_sets_the_box():
    ivc, liver = Box((0, 30, 50), (40, 50, 60)), Box((0, 0, 0), (60, 100, 100))
    both = search_box(7, {6: ivc, 2: KIDNEY, 1: liver}, (2.0, 1.0, 1.0), (60, 100, 100))
    assert both == search_box(7, {2: KIDNEY}, (2.0, 1.0, 1.0), (60, 100, 100))
    # Without the kidney, the IVC: its upper half z 20..40 and posterior half y 40..50, whole x,
    # grown by 25 mm = (13, 25, 25) voxels.
    assert search_box(7, {6: ivc, 1: liver}, (2.0, 1.0, 1.0), (60, 100, 100)) == Box((7, 15, 25), (53, 75, 85))


def test_a_large_neighbour_gives_a_box_cut_to_the_organs_largest_size_around_its_centre():
    # Right adrenal from the liver alone: z 50..150, y 100..200, x 90..180 of the liver, grown by
    # 15 mm: 35..165, 85..215, 75..195; cut to 100 mm around the centres 100, 150, 135.
    box = search_box(7, {1: Box((0, 0, 0), (200, 200, 300))}, (1.0, 1.0, 1.0), (400, 400, 400))
    assert box == Box((50, 100, 85), (150, 200, 185))


def test_the_box_is_clipped_to_the_scan():
    # Gallbladder from the liver: its lower half z 0..20, anterior half y 0..20, x 4..24 of 40,
    # grown by 20 voxels and clipped at 0.
    box = search_box(9, {1: Box((0, 0, 0), (40, 40, 40))}, (1.0, 1.0, 1.0), (50, 50, 50))
    assert box == Box((0, 0, 0), (40, 40, 44))


def test_nothing_is_sought_without_a_neighbour():
    assert search_box(9, {3: KIDNEY}, (1.0, 1.0, 1.0), (60, 100, 100)) is None  # the spleen is no neighbour
    assert search_box(9, {}, (1.0, 1.0, 1.0), (60, 100, 100)) is None
    assert search_box(14, {1: KIDNEY}, (1.0, 1.0, 1.0), (60, 100, 100)) is None  # lesions have no place


def test_union():
    assert union(Box((0, 5, 2), (3, 9, 4)), Box((1, 1, 3), (2, 6, 8))) == Box((0, 1, 2), (3, 9, 8))


def test_the_table_names_organs_and_spans_within_their_neighbours():
    assert set(NEIGHBOURHOOD) == set(ORGAN_IDS)
    for label, hood in NEIGHBOURHOOD.items():
        assert hood.near and hood.max_mm > 0
        for near in hood.near:
            assert near.neighbour in ORGAN_IDS and near.neighbour != label and near.margin_mm >= 0
            assert all(0 <= low < high <= 1 for low, high in near.part_zyx), (label, near)


def test_each_organ_of_a_real_scan_lies_in_the_box_its_neighbours_give(data_dir):
    """TotalSegmentator's organs of the sample scan (model output): the box from an organ's first
    neighbour holds at least 95% of it, from any of its neighbours at least 80%."""
    volume, _ = to_canonical(read_volume(data_dir / "ts_example" / "flare_labels_fullct_from_v2fast.nii.gz"))
    labels, spacing = np.asarray(volume.array), volume.geometry.spacing_zyx_mm
    boxes = {label: bounding_box(labels == label) for label in ORGAN_IDS if (labels == label).any()}
    checked = 0
    for label, hood in NEIGHBOURHOOD.items():
        for rank, near in enumerate(hood.near):
            if label not in boxes or near.neighbour not in boxes:
                continue
            box = search_box(label, {near.neighbour: boxes[near.neighbour]}, spacing, labels.shape)
            share = np.count_nonzero(labels[box.slices] == label) / np.count_nonzero(labels == label)
            assert share >= (0.95 if rank == 0 else 0.8), (label, near.neighbour, share)
            checked += 1
    assert checked >= 25  # the esophagus is outside this scan; every other relation is checked

