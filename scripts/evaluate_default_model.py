"""Measure a model the way the default model's card reports it.

    python scripts/evaluate_default_model.py DATA_ROOT OUT_DIR [MODEL_DIR]

Writes OUT_DIR/{seen,heldout}/{pred,gt} and prints `flareseg evaluate` tables for:

- ``seen``: the two scans with TotalSegmentator labels that the default model was trained on
  (fit to its training data, against another model's output);
- ``heldout``: the TCIA scan the model never saw labels of, against its *manual* clinical
  contour of stomach + duodenum (one structure): the prediction's stomach and duodenum are
  merged into id 11 and only that class is scored;
- ``fields of view``: the bundled sample cut along its axis into the fields of view real
  scans have (:func:`fields_of_view`); per cut, each kidney's, the liver's and the spleen's DSC
  and the distance between the predicted and the labelled organ's centre.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

from flareseg import labels
from flareseg.cli.main import main as flareseg
from flareseg.data import sample_ct_path, sample_labels_path
from flareseg.inference.predict import PredictOptions, open_model, predict, segment
from flareseg.io import Geometry, Volume, read_ct, read_volume, write_labelmap
from flareseg.preprocessing.orientation import align_to, to_canonical

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


def fields_of_view(label: np.ndarray) -> dict[str, slice]:
    """Axial cuts of a canonical (LPS: slice index rising towards the head) abdomen + pelvis
    label map, placed by its organs: the fields of view real scans have."""
    kidneys = np.flatnonzero(np.isin(label, [2, 13]).any(axis=(1, 2)))
    liver = np.flatnonzero((label == 1).any(axis=(1, 2)))
    n, middle = label.shape[0], int(kidneys[len(kidneys) // 2])
    return {"abdomen + pelvis (whole scan)": slice(0, n),
            "upper abdomen, ending 5 slices below the kidneys": slice(max(int(kidneys[0]) - 5, 0), n),
            "liver to the top of the scan": slice(int(liver[0]), n),
            "10 slices through the kidneys": slice(middle - 5, middle + 5),
            "top 30% cut off": slice(0, int(n * 0.7)),
            "bottom 40% cut off": slice(int(n * 0.4), n)}


def sample_cuts() -> tuple[Volume, np.ndarray, dict[str, slice]]:
    """The bundled sample CT and its labels in canonical orientation, and its field-of-view cuts."""
    ct = read_ct(sample_ct_path())
    label = to_canonical(align_to(read_volume(sample_labels_path()), ct.geometry))[0].array
    canonical = to_canonical(ct)[0]
    return canonical, label, fields_of_view(label)


def cut(ct: Volume, part: slice) -> Volume:
    """The axial slices ``part`` of a canonical volume (the same origin: offsets are not needed here)."""
    g = ct.geometry
    geometry = Geometry((part.stop - part.start, *g.shape_zyx[1:]), g.spacing_xyz_mm, g.origin_lps_mm, g.direction_lps)
    return Volume(np.ascontiguousarray(ct.array[part]), geometry)


def organ_placement(mask: np.ndarray, reference: np.ndarray, class_id: int, spacing_zyx_mm) -> tuple[float, float]:
    """DSC of one organ and the distance (mm) between its predicted and labelled centres (inf if
    missed); both NaN when the organ is not in the reference."""
    predicted, labelled = mask == class_id, reference == class_id
    if not labelled.any():
        return float("nan"), float("nan")
    dsc = 2 * np.count_nonzero(predicted & labelled) / (np.count_nonzero(predicted) + np.count_nonzero(labelled))
    if not predicted.any():
        return dsc, float("inf")
    offset = (np.argwhere(predicted).mean(0) - np.argwhere(labelled).mean(0)) * np.asarray(spacing_zyx_mm)
    return dsc, float(np.linalg.norm(offset))


def fields_of_view_table(model) -> str:
    ct, label, cuts = sample_cuts()
    organs = {"right kidney": 2, "left kidney": 13, "liver": 1, "spleen": 3}
    rows = ["| field of view | slices | " + " | ".join(organs) + " |", "|---|---:|" + "---|" * len(organs)]
    for name, part in cuts.items():
        mask, reference = segment(cut(ct, part), model).array, label[part]
        cells = []
        for class_id in organs.values():
            dsc, offset = organ_placement(mask, reference, class_id, ct.geometry.spacing_zyx_mm)
            cells.append("-" if dsc != dsc else f"{dsc:.2f} / {offset:.0f} mm")
        rows.append(f"| {name} | {part.stop - part.start} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


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
    print("\n## fields of view (DSC / distance between predicted and labelled centre)")
    print(fields_of_view_table(model))


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    run(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) == 4 else None)
