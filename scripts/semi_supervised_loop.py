"""Run the teacher -> pseudo-labels -> student loop on the shared scans and score each model on
the one manual label none of them trained on.

    python scripts/semi_supervised_loop.py DATA_ROOT OUT_DIR [--recipe R] [--rounds N] [--epochs E] [--iterations I]

Dataset (``OUT_DIR/Dataset``): the default model's labelled cases (``ts_full``, ``ts_dicom``, the
aorta-only ``ts_aorta``) and, unlabelled, the five TCIA HCC-TACE-Seg scans (arterial, non-contrast
at 5 and 10 mm, portal venous, late venous). The TCIA pancreatic scan ``cb001`` is held out
entirely (neither its image nor its contour is trained on); every model (the teacher and each
round's student) is scored on it: DSC of the predicted stomach + duodenum, merged, against the
clinical contour of stomach + duodenum. Prints a table per model and the selection's instability
of each unlabelled scan.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np

from flareseg import labels
from flareseg.cli.main import main as flareseg
from flareseg.inference.model import load_model
from flareseg.inference.predict import predict
from flareseg.io import read_volume
from flareseg.preprocessing.orientation import align_to

HERE = Path(__file__).resolve().parent
MERGED = (labels.BY_NAME["stomach"].id, labels.BY_NAME["duodenum"].id)
UNLABELLED = {"hcc006_arterial": "tcia_hcc_tace_seg_hcc006/ct.nii.gz",
              "hcc005_noncontrast_5mm": "tcia_hcc_tace_seg_multiphase/hcc005_pre_noncontrast/ct.nii.gz",
              "hcc007_noncontrast_10mm": "tcia_hcc_tace_seg_multiphase/hcc007_noncontrast_10mm/ct.nii.gz",
              "hcc007_portal": "tcia_hcc_tace_seg_multiphase/hcc007_portalvenous/ct.nii.gz",
              "hcc007_late": "tcia_hcc_tace_seg_multiphase/hcc007_latevenous_abdomen/ct.nii.gz"}


def build(data: Path, root: Path) -> Path:
    spec = importlib.util.spec_from_file_location("make_default_dataset", HERE / "make_default_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build(data, root)
    (root / "imagesUnlabelledTr" / "tcia_cb001_0000.nii.gz").unlink()  # held out: image and contour
    for case, path in UNLABELLED.items():
        (root / "imagesUnlabelledTr" / f"{case}_0000.nii.gz").symlink_to(data / path)
    dataset = json.loads((root / "dataset.json").read_text())
    dataset["unlabelled"] = sorted(UNLABELLED)
    (root / "dataset.json").write_text(json.dumps(dataset, indent=1))
    return root


def heldout_dsc(data: Path, model_dir: Path) -> float:
    """DSC of the predicted stomach + duodenum against cb001's clinical contour of both."""
    tcia = data / "tcia_pancreatic_ct_cbct_seg_cb001"
    mask = predict(tcia / "ct.nii.gz", None, load_model(model_dir))
    contour = align_to(read_volume(tcia / "label.nii.gz"), mask.geometry).array == 1
    found = np.isin(mask.array, MERGED)
    total = found.sum() + contour.sum()
    return float(2 * (found & contour).sum() / total) if total else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--recipe", default="attention_dmfnet")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    dataset = args.out / "Dataset"
    if not dataset.is_dir():
        build(args.data, dataset)
    start = time.perf_counter()
    code = flareseg(["train", "--dataset", str(dataset), "--recipe", args.recipe, "--out", str(args.out / "loop"),
                     "--rounds", str(args.rounds), "--epochs", str(args.epochs), "--iterations", str(args.iterations),
                     "--device", "cpu", "--no-progress"])
    if code:
        raise SystemExit(code)
    print(f"loop: {time.perf_counter() - start:.0f} s in all")
    print("| model | training s | round it made: s per scan | held-out stomach+duodenum DSC (cb001) |")
    print("|---|---|---|---|")
    loop = args.out / "loop"
    for number, name in enumerate(["teacher"] + [f"student{r}" for r in range(1, args.rounds + 1)]):
        meta = json.loads((loop / name / "model.json").read_text())["training"]["stages"]
        seconds = sum(stage["seconds"] for stage in meta.values())
        made = loop / "pseudoLabelsTr" / f"round{number + 1}" / "provenance.json"
        per_scan = "-"
        if made.is_file():
            cases = json.loads(made.read_text())["cases"].values()
            per_scan = f"{np.mean([case['seconds'] for case in cases]):.1f}"
        print(f"| {name} | {seconds:.0f} | {per_scan} | {heldout_dsc(args.data, loop / name):.3f} |")
    selection = loop / "pseudoLabelsTr" / "selection.json"
    if selection.is_file():
        chosen = json.loads(selection.read_text())
        print(f"selection over rounds {chosen['rounds']}: dropped {chosen['dropped']}")
        for case, score in chosen["instability"].items():
            print(f"  {case}: instability {score:.3f}")


if __name__ == "__main__":
    main()
