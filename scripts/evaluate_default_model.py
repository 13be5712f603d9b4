"""Measure a model the way the default model's card reports it.

    python scripts/evaluate_default_model.py DATA_ROOT OUT_DIR [MODEL_DIR]

Writes OUT_DIR/{seen,heldout}/{pred,gt} and prints `flareseg evaluate` tables for:

- ``seen``: the two scans with TotalSegmentator labels that the default model was trained on
  (fit to its training data, against another model's output);
- ``heldout``: the TCIA scan the model never saw labels of, against its *manual* clinical
  contour of stomach + duodenum (one structure): the prediction's stomach and duodenum are
  merged into id 11 and only that class is scored.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

from flareseg import labels
from flareseg.cli.main import main as flareseg
from flareseg.inference.predict import PredictOptions, open_model, predict
from flareseg.io import read_volume, write_labelmap
from flareseg.preprocessing.orientation import align_to

STOMACH, DUODENUM = labels.BY_NAME["stomach"].id, labels.BY_NAME["duodenum"].id


def seen(data: Path, out: Path, model) -> None:
    ts = data / "ts_example"
    for case, ct, label in (("ts_full", "example_ct.nii.gz", "flare_labels_fullct_from_v2fast.nii.gz"),
                            ("ts_dicom", "example_ct_dicom", "flare_labels_dicom_from_v2fast.nii.gz")):
        mask = predict(ts / ct, out / "pred" / f"{case}.nii.gz", model)
        reference = align_to(read_volume(ts / label), mask.geometry)
        write_labelmap(reference.array, reference.geometry, out / "gt" / f"{case}.nii.gz")


def heldout(data: Path, out: Path, model) -> None:
    tcia = data / "tcia_pancreatic_ct_cbct_seg_cb001"
    mask = predict(tcia / "dicom_ct", None, model)
    merged = np.where(np.isin(mask.array, [STOMACH, DUODENUM]), STOMACH, 0).astype(np.uint8)
    write_labelmap(merged, mask.geometry, out / "pred" / "tcia_cb001.nii.gz")
    contour = read_volume(tcia / "label.nii.gz")
    write_labelmap(np.where(contour.array == 1, STOMACH, 0), contour.geometry, out / "gt" / "tcia_cb001.nii.gz")
    spec = {"channel_names": {"0": "CT"}, "labels": labels.nnunet_labels(), "numTraining": 1,
            "file_ending": ".nii.gz", "annotated_classes": {"tcia_cb001": [STOMACH]}}
    (out / "dataset.json").write_text(json.dumps(spec))


def run(data: Path, out: Path, model_dir: Path | None) -> None:
    model = open_model(PredictOptions(model_dir=model_dir))
    for name, build in (("seen", seen), ("heldout", heldout)):
        folder = out / name
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "pred").mkdir(parents=True)
        (folder / "gt").mkdir()
        build(data, folder, model)
        print(f"\n## {name}")
        args = ["evaluate", "--pred", str(folder / "pred"), "--gt", str(folder / "gt"), "--quiet", "--format", "markdown"]
        if (folder / "dataset.json").is_file():
            args += ["--dataset", str(folder)]
        flareseg(args)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    run(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) == 4 else None)
