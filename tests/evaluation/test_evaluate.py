"""evaluate refuses a ground truth that is not FLARE ids (as the rule set's script reads it)
instead of scoring it."""

from __future__ import annotations

import numpy as np
import pytest

from flareseg.errors import InputError
from flareseg.evaluation.evaluate import evaluate_folders
from flareseg.evaluation.rules import rules_for
from flareseg.io import Volume, read_volume, write_labelmap
from flareseg.io.write import write_volume


@pytest.mark.parametrize("where, values", [("gt", (0, 117)), ("gt", "ct")])
def test_label_maps_that_are_not_flare_ids_are_refused(tmp_path, data_dir, where, values):
    label = read_volume(data_dir / "ts_example" / "flare_labels_fullct_from_v2fast.nii.gz")
    if values == "ct":
        bad = read_volume(data_dir / "ts_example" / "example_ct.nii.gz")  # a CT given as ground truth
    else:
        array = label.array.astype(np.int16)
        array[array == 1] = values[1]
        bad = Volume(array, label.geometry)
    for folder in ("gt", "pred"):
        (tmp_path / folder).mkdir()
    write_labelmap(label.array, label.geometry, tmp_path / ("pred" if where == "gt" else "gt") / "c.nii.gz")
    write_volume(bad, tmp_path / where / "c.nii.gz")
    with pytest.raises(InputError, match="not a FLARE label map"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt", rules_for("flare22"), progress=False)


def test_a_real_flare_label_map_is_still_scored(tmp_path, data_dir):
    label = read_volume(data_dir / "ts_example" / "flare_labels_fullct_from_v2fast.nii.gz")
    for folder in ("gt", "pred"):
        (tmp_path / folder).mkdir()
        write_labelmap(label.array, label.geometry, tmp_path / folder / "c.nii.gz")
    scores = evaluate_folders(tmp_path / "pred", tmp_path / "gt", rules_for("flare22"), progress=False)
    present = {s.class_id for s in scores if s.dsc == 1.0}
    assert present >= {1, 2, 3, 5, 6}
