"""Reorientation: exact, reversible, and consistent with physical space."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from flareseg.errors import GeometryError
from flareseg.io import Geometry, Volume, read_volume
from flareseg.preprocessing.orientation import (
    align_to,
    canonical_reorientation,
    reoriented_geometry,
    to_canonical,
)


def _geometry_with(permutation, signs, shape_zyx=(5, 6, 7)) -> Geometry:
    """A grid whose index axis j points along physical axis permutation[j] with sign signs[j]."""
    direction = np.zeros((3, 3))
    for index_axis, (physical, sign) in enumerate(zip(permutation, signs)):
        direction[physical, index_axis] = sign
    return Geometry(shape_zyx, (0.7, 1.1, 2.5), (10.0, -20.0, 30.0), tuple(map(tuple, direction)))


ORIENTATIONS = [
    (perm, signs)
    for perm in itertools.permutations(range(3))
    for signs in itertools.product((1.0, -1.0), repeat=3)
]


@pytest.mark.parametrize("perm, signs", ORIENTATIONS)
def test_all_48_orientations_reach_canonical_and_return_exactly(perm, signs, rng):
    geometry = _geometry_with(perm, signs)
    array = rng.integers(-1000, 1000, size=geometry.shape_zyx).astype(np.int16)
    canonical, reorientation = to_canonical(Volume(array, geometry))
    np.testing.assert_allclose(canonical.geometry.direction_matrix, np.eye(3), atol=1e-12)
    np.testing.assert_array_equal(reorientation.invert(canonical.array), array)


@pytest.mark.parametrize("perm, signs", ORIENTATIONS[::5])
def test_every_voxel_keeps_its_physical_position(perm, signs, rng):
    geometry = _geometry_with(perm, signs)
    array = np.arange(np.prod(geometry.shape_zyx)).reshape(geometry.shape_zyx)
    canonical, _ = to_canonical(Volume(array, geometry))
    for _ in range(20):
        z, y, x = (int(rng.integers(0, n)) for n in canonical.geometry.shape_zyx)
        position = canonical.geometry.index_to_lps_matrix() @ [x, y, z, 1]
        source_index = np.linalg.solve(geometry.index_to_lps_matrix(), position)[:3]
        sx, sy, sz = np.round(source_index).astype(int)
        assert canonical.array[z, y, x] == array[sz, sy, sx]


def test_real_ras_ct_reorients_with_two_flips(data_dir):
    ct = read_volume(data_dir / "ts_example" / "example_ct.nii.gz")
    canonical, reorientation = to_canonical(ct)
    assert ct.geometry.orientation_code() == "RAS"
    assert canonical.geometry.orientation_code() == "LPS"
    assert reorientation.axes == (0, 1, 2) and reorientation.flips == (False, True, True)
    np.testing.assert_array_equal(reorientation.invert(canonical.array), ct.array)


def test_lps_dicom_ct_is_already_canonical(data_dir):
    ct = read_volume(data_dir / "ts_example" / "example_ct_dicom.nii.gz")
    assert canonical_reorientation(ct.geometry).is_identity


def test_las_label_is_brought_onto_lps_ct_exactly(data_dir):
    """The TotalSegmentator mask stored in LAS overlays its LPS CT only through its affine."""
    nib = pytest.importorskip("nibabel")
    label_path = data_dir / "ts_example" / "flare_labels_dicom_from_v2fast.nii.gz"
    ct_path = data_dir / "ts_example" / "example_ct_dicom.nii.gz"
    ct = read_volume(ct_path)
    aligned = align_to(read_volume(label_path), ct.geometry)
    assert aligned.geometry == ct.geometry
    # Independent check: nibabel's closest-canonical arrays of both files coincide.
    expected = np.asanyarray(nib.as_closest_canonical(nib.load(label_path)).dataobj)
    ct_nib = nib.load(ct_path)
    ours = nib.orientations.apply_orientation(aligned.array.transpose(2, 1, 0), nib.orientations.io_orientation(ct_nib.affine))
    np.testing.assert_array_equal(ours, expected)
    assert set(np.unique(ours)) >= {1, 3, 11}


def test_ras_label_aligns_onto_itself_reoriented(data_dir):
    labels = read_volume(data_dir / "ts_example" / "flare_labels_fullct_from_v2fast.nii.gz")
    canonical, reorientation = to_canonical(labels)
    back = align_to(canonical, labels.geometry)
    np.testing.assert_array_equal(back.array, labels.array)


def test_align_refuses_a_different_grid(data_dir):
    label = read_volume(data_dir / "ts_example" / "flare_labels_sm_from_v2normal.nii.gz")
    ct = read_volume(data_dir / "ts_example" / "example_ct.nii.gz")
    with pytest.raises(GeometryError, match="grids differ"):
        align_to(label, ct.geometry)


def test_reoriented_geometry_of_identity_is_unchanged():
    geometry = _geometry_with((0, 1, 2), (1.0, 1.0, 1.0))
    reorientation = canonical_reorientation(geometry)
    assert reorientation.is_identity
    assert reoriented_geometry(geometry, reorientation) == geometry


def test_degenerate_direction_is_refused():
    c = np.sqrt(0.5)
    direction = ((c, c, 0.0), (c, c, 0.0), (0.0, 0.0, 1.0))
    with pytest.raises(GeometryError, match="ambiguous"):
        canonical_reorientation(Geometry((2, 2, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), direction))
