"""Leave-one-scan-out: train on every labelled case but one, score the one left out; per case.

    python scripts/leave_one_out.py DATASET OUT [--rules RULES] [--case ID ...] [--recipe RECIPE] [flareseg train options...]

For each labelled case of DATASET (nnU-Net layout, flareseg keys honoured), OUT/folds/<case>/
gets a dataset without that case (links to the other files; the unlabelled cases stay) and a
model trained on it with ``flareseg train`` (``--resume`` on a rerun, so an interrupted run goes
on where it stopped); the model predicts the held-out image into OUT/pred/<case>.nii.gz. Last,
``flareseg evaluate --dataset DATASET`` scores every held-out prediction against its own label,
in the dataset's numbering, with its partial and merged labels, and prints the table: no score
comes from a scan the model was trained on. ``--case ID`` (repeatable) runs only those folds, in
that order; a later run without it adds the others, and the table covers every finished fold. ``--rules`` names the evaluation's rule set (default
flare22, the 13 organs; flare23 scores lesions too); the other options after OUT go to
``flareseg train`` (e.g. ``--recipe scripts/default_model.yaml --device cuda``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from flareseg.cli.main import main as flareseg
from flareseg.datasets.layout import label_path, list_cases, load_spec


def fold_dataset_json(dataset_json: dict, held_out: str, remaining: int) -> dict:
    """``dataset.json`` of a fold: the held-out case's flareseg entries dropped, the count updated."""
    fold = dict(dataset_json, numTraining=remaining)
    if "annotated_classes" in fold:
        fold["annotated_classes"] = {k: v for k, v in fold["annotated_classes"].items() if k != held_out}
    return fold


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    try:
        os.symlink(source.resolve(), target)
    except OSError:
        shutil.copy(source, target)


def make_fold(root: Path, held_out: str, out: Path) -> Path:
    """A dataset folder ``out`` holding every case of ``root`` but ``held_out``."""
    spec = load_spec(root)
    cases = [case for case in list_cases(spec) if case.case_id != held_out]
    for case in cases:  # images keep their folder: imagesTr, or the unlabelled images' own
        _link(case.image, out / case.image.parent.name / case.image.name)
        if case.label is not None:
            _link(case.label, out / "labelsTr" / case.label.name)
    dataset_json = json.loads((root / "dataset.json").read_text())
    labelled = sum(case.label is not None for case in cases)
    (out / "dataset.json").write_text(json.dumps(fold_dataset_json(dataset_json, held_out, labelled), indent=1))
    return out


def take_option(args: list[str], option: str) -> tuple[list[str], list[str]]:
    """``(args without option, its values in order)`` for an option given as ``option VALUE`` or ``option=VALUE``."""
    rest, values = [], []
    items = iter(args)
    for item in items:
        if item == option:
            value = next(items, None)
            if value is None:
                sys.exit(f"{option} needs a value")
            values.append(value)
        elif item.startswith(option + "="):
            values.append(item[len(option) + 1:])
        else:
            rest.append(item)
    return rest, values


def split_rules(args: list[str]) -> tuple[list[str], list[str]]:
    """``(train options, evaluate options)``: ``--rules NAME`` goes to the evaluation."""
    rest, rules = take_option(args, "--rules")
    return rest, ["--rules", rules[-1]] if rules else []


def held_out_cases(labelled: list[str], chosen: list[str]) -> list[str]:
    """The folds to run: ``chosen`` in its order, or every labelled case."""
    unknown = [case for case in chosen if case not in labelled]
    if unknown:
        sys.exit(f"--case {unknown[0]}: not a labelled case of the dataset ({', '.join(labelled)})")
    return list(dict.fromkeys(chosen)) or labelled


def run(root: Path, out: Path, train_args: list[str]) -> int:
    train_args, chosen = take_option(train_args, "--case")
    train_args, evaluate_args = split_rules(train_args)
    spec = load_spec(root)
    labelled = {case.case_id: case for case in list_cases(spec) if case.label is not None}
    (out / "pred").mkdir(parents=True, exist_ok=True)
    (out / "gt").mkdir(parents=True, exist_ok=True)
    for case in (labelled[case_id] for case_id in held_out_cases(list(labelled), chosen)):
        fold = out / "folds" / case.case_id
        dataset = make_fold(root, case.case_id, fold / "dataset")
        model = fold / "model"
        if not (model / "model.json").is_file():
            resume = ["--resume"] if model.exists() else []
            if flareseg(["train", "--dataset", str(dataset), "--out", str(model), *resume, *train_args]):
                return 1
        prediction = out / "pred" / f"{case.case_id}{spec.file_ending}"
        if flareseg(["predict", "-i", str(case.image), "-o", str(prediction), "-m", str(model)]):
            return 1
        _link(label_path(spec, case.case_id), out / "gt" / f"{case.case_id}{spec.file_ending}")
    return flareseg(["evaluate", "--pred", str(out / "pred"), "--gt", str(out / "gt"), "--dataset", str(root),
                     "--quiet", *evaluate_args])


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] in ("-h", "--help"):
        sys.exit(__doc__)
    sys.exit(run(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]))
