"""Per-organ numbers of a mask on its CT: volume, HU distribution, extent and components."""

from __future__ import annotations

import itertools

import cc3d
import numpy as np

from flareseg.io import Volume
from flareseg.labels import label_name

#: HU percentiles reported per organ.
PERCENTILES = (5, 25, 50, 75, 95)


def organ_statistics(ct: Volume, mask: Volume) -> dict[str, dict]:
    """For every class present in ``mask`` (on ``ct``'s grid), by class name:

    - ``volume_ml``: voxels times the voxel volume;
    - ``hu_mean``, ``hu_std``, ``hu_p5`` ... ``hu_p95``: of the CT inside the class;
    - ``bbox_lps_mm``: ``[[min L, min P, min S], [max L, max P, max S]]`` of the class's voxel
      centres in patient coordinates (LPS, mm);
    - ``components``: 26-connected components.
    """
    voxel_ml = float(np.prod(mask.geometry.spacing_xyz_mm)) / 1000.0
    to_lps = mask.geometry.index_to_lps_matrix()
    out = {}
    for class_id in (int(i) for i in np.unique(mask.array) if i):
        inside = mask.array == class_id
        hu = ct.array[inside].astype(np.float64)
        z, y, x = (np.flatnonzero(inside.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1)))
        corners = np.array([[i, j, k, 1.0] for i, j, k in itertools.product((x[0], x[-1]), (y[0], y[-1]),
                                                                              (z[0], z[-1]))]) @ to_lps.T
        entry = {"class_id": class_id, "voxels": int(hu.size), "volume_ml": round(hu.size * voxel_ml, 3),
                 "hu_mean": round(float(hu.mean()), 2), "hu_std": round(float(hu.std()), 2)}
        entry.update({f"hu_p{p}": round(float(v), 2) for p, v in zip(PERCENTILES, np.percentile(hu, PERCENTILES))})
        entry["bbox_lps_mm"] = [np.round(corners[:, :3].min(axis=0), 2).tolist(),
                                np.round(corners[:, :3].max(axis=0), 2).tolist()]
        entry["components"] = int(cc3d.connected_components(inside, connectivity=26).max())
        out[label_name(class_id)] = entry
    return out
