"""Assemble the training set of the bundled default model, in the nnU-Net layout.

    python scripts/make_default_dataset.py DATA_ROOT OUT_DIR

DATA_ROOT is the folder of real CT scans described in the README (``ts_example/`` and
``tcia_pancreatic_ct_cbct_seg_cb001/``). Cases:

- ``ts_full``: the abdomen/pelvis CT (3 mm) with its 12 TotalSegmentator organs (FLARE ids);
- ``ts_dicom``: the 20-slice 512x512 upper-abdomen series with its TotalSegmentator labels;
- ``ts_aorta``: a thorax/upper-abdomen crop (1.5 mm) annotated for the aorta only (partial);
- ``tcia_cb001``: an upper-abdomen CT without FLARE labels (unlabelled: ``imagesUnlabelledTr/``).
  Its clinical contour of stomach + duodenum could train as a merged label, but it is the one
  manual label the model is checked against on a scan it never saw
  (``scripts/evaluate_default_model.py``), so it stays out of training until leave-one-scan-out
  (``scripts/leave_one_out.py``) measures it.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from flareseg import labels
from flareseg.datasets.layout import UNLABELLED_FOLDER
from flareseg.io import read_volume, write_labelmap


def build(data_root: Path, out: Path) -> Path:
    ts = data_root / "ts_example"
    for folder in ("imagesTr", "labelsTr", UNLABELLED_FOLDER):
        (out / folder).mkdir(parents=True, exist_ok=True)

    def add(case_id, image, label=None, unlabelled=False):
        shutil.copy(image, out / (UNLABELLED_FOLDER if unlabelled else "imagesTr") / f"{case_id}_0000.nii.gz")
        if label is not None:
            shutil.copy(label, out / "labelsTr" / f"{case_id}.nii.gz")

    add("ts_full", ts / "example_ct.nii.gz", ts / "flare_labels_fullct_from_v2fast.nii.gz")
    add("ts_dicom", ts / "example_ct_dicom.nii.gz", ts / "flare_labels_dicom_from_v2fast.nii.gz")
    add("ts_aorta", ts / "extra_aorta_report_crop" / "ct_cropped.nii.gz")
    aorta = read_volume(ts / "extra_aorta_report_crop" / "aorta.nii.gz")
    write_labelmap((aorta.array > 0) * labels.BY_NAME["aorta"].id, aorta.geometry, out / "labelsTr" / "ts_aorta.nii.gz")
    add("tcia_cb001", data_root / "tcia_pancreatic_ct_cbct_seg_cb001" / "ct.nii.gz", unlabelled=True)
    spec = {"channel_names": {"0": "CT"}, "labels": labels.nnunet_labels(), "numTraining": 3,
            "file_ending": ".nii.gz", "annotated_classes": {"ts_aorta": [5]}, "unlabelled": ["tcia_cb001"]}
    (out / "dataset.json").write_text(json.dumps(spec, indent=1))
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(build(Path(sys.argv[1]), Path(sys.argv[2])))
