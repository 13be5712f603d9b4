"""What each built-in recipe costs at its own settings: parameters and forward FLOPs of every
stage network, and the whole-process time and peak memory of ``flareseg predict`` on real scans,
next to a floor measured in the same run.

    python benchmarks/recipe_cost.py [--scan CT ...] [--recipes NAME ...] [--repeat N] [--timeout S]

For each recipe (default: every one of ``flareseg.recipes.builtin_recipes()``, plus
``default_model``, the bundled trained coarse_to_fine model) it prints, per stage and in all:

- parameters of the stage network (the one prediction runs: the last phase's);
- forward GFLOPs at the stage's prediction inputs on the scan: the network calls a prediction
  makes (``slices_2d``: per slice x slices, each slice padded to the network's size multiple;
  crop stages: per crop x crops), counted with ``torch.utils.flop_counter.FlopCounterMode``,
  which counts 2 FLOPs per multiply-add and only convolutions and matrix products (not
  normalisation, activations or additions), batch 1, eval mode; also at the training patch
  size (``stage.size_zyx``; ``[1, 1, *size_zyx]`` for a 2D stage);
- wall seconds, sampled CPU seconds and peak resident memory of the whole process
  ``flareseg predict -i SCAN -o OUT.nii.gz -m MODEL_DIR`` (imports, model loading, reading,
  preprocessing, every stage, writing), sampled every 0.1 s by
  ``flareseg.evaluation.efficiency.measure_command``; the fastest of ``--repeat`` runs, and its
  ratios to the floor of benchmarks/predict_speed.py (a Python process that only reads the CT
  and writes a mask of its size), measured in the same run.

The recipes are not trained: each stage network is built from the registry with
``torch.manual_seed(0)``, saved as training saves it (float16), exported to ONNX and predicted
with onnxruntime (``--backend onnx``; PyTorch where the export fails, as the table says). A
z-score recipe gets its statistics from a real labelled scan (``ts_example/example_ct.nii.gz``
and its FLARE labels). Network time does not depend on the weight values, except in a cascade:
how many crops its fine stages get, and how large they are (resampling time and memory), follow
its coarse stage's output, so the FLOPs column counts the calls a prediction really made on the
scan (run in-process, before the timing), and the bundled trained model is the one to trust there.

``--scan`` takes CT files or DICOM folders; the default is ``ts_example/example_ct_dicom`` (a
512x512x20 DICOM series) in the data folder ``../shared/data`` beside the repository, or
``$FLARESEG_TEST_DATA``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from flareseg.data import default_model_dir
from flareseg.evaluation.efficiency import measure_command
from flareseg.inference.model import LoadedModel, load_model, read_recipe
from flareseg.recipes import Recipe, builtin_recipes, load_recipe
from predict_speed import FLOOR

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = "default_model"
#: The labelled scan a z-score recipe takes its intensity statistics from (in the data folder).
STATISTICS_CT = ("ts_example", "example_ct.nii.gz")
STATISTICS_LABEL = ("ts_example", "flare_labels_fullct_from_v2fast.nii.gz")


def data_root() -> Path:
    return Path(os.environ.get("FLARESEG_TEST_DATA", HERE.parents[1] / "shared" / "data"))


@dataclasses.dataclass
class Model:
    """A model directory to measure, how it is predicted, and what to say about it."""

    label: str
    directory: Path | None
    backend: str = "onnx"
    note: str = ""
    error: str = ""


# ---------------------------------------------------------------- model directories


def zscore_statistics(recipe: Recipe, data: Path) -> dict[str, float]:
    """``preprocess.statistics`` as training computes them, from one real labelled scan."""
    from flareseg.io import read_ct, read_volume
    from flareseg.preprocessing.intensity import foreground_statistics, sample_foreground
    from flareseg.preprocessing.orientation import align_to

    ct = read_ct(data.joinpath(*STATISTICS_CT))
    label = align_to(read_volume(data.joinpath(*STATISTICS_LABEL)), ct.geometry)
    rng = np.random.default_rng(recipe.train.seed)
    return foreground_statistics([sample_foreground(ct.array, label.array, rng)], recipe.preprocess.percentiles)


def untrained_model(name: str, folder: Path, data: Path) -> Model:
    """A model directory of recipe ``name`` with untrained weights (seed 0), exported to ONNX."""
    import torch

    from flareseg.inference.export import export_onnx
    from flareseg.inference.model import weights_path
    from flareseg.models.registry import build_network
    from flareseg.training.loop import RunOptions
    from flareseg.training.train import Split, prepare_output, save_weights, write_model_json

    recipe = load_recipe(name)
    note = ""
    if recipe.preprocess.normalization == "zscore" and recipe.preprocess.statistics is None:
        statistics = zscore_statistics(recipe, data)
        recipe = dataclasses.replace(recipe, preprocess=dataclasses.replace(recipe.preprocess, statistics=statistics))
        note = "z-score statistics from {}: ".format("/".join(STATISTICS_CT)) + ", ".join(
            f"{key} {value:.1f}" for key, value in statistics.items())
    directory = folder / name
    for stage in recipe.stages:  # fail (unknown network, bad arguments) before writing anything
        network = recipe.stage_network(stage)
        build_network(network.name, network.kwargs, stage.channels)
    prepare_output(directory, recipe, resume=False)
    for stage in recipe.stages:
        network = recipe.stage_network(stage)
        torch.manual_seed(0)
        net = build_network(network.name, network.kwargs, stage.channels)
        save_weights(net.state_dict(), weights_path(directory, stage.name))
    write_model_json(directory, recipe, Split([], []), Path("untrained"), RunOptions(progress=False), {})
    model = Model(f"{name} (untrained)", directory, "onnx", note)
    try:
        export_onnx(directory)
    except Exception as error:  # noqa: BLE001 - any export failure: time PyTorch instead, and say why
        model.backend = "torch"
        model.note = "; ".join(filter(None, [note, f"ONNX export failed ({type(error).__name__}: {error}); "
                                                   "PyTorch backend timed"]))
    return model


def models(names: list[str], folder: Path, data: Path) -> list[Model]:
    out = []
    for name in names:
        print(f"preparing {name} ...", file=sys.stderr, flush=True)
        if name == DEFAULT_MODEL:
            directory = default_model_dir()
            from flareseg.inference.model import onnx_mismatches

            stages = [stage.name for stage in read_recipe(directory).stages]
            backend = "torch" if onnx_mismatches(directory, stages) else "onnx"
            out.append(Model(f"{DEFAULT_MODEL} (bundled, trained coarse_to_fine)", directory, backend))
            continue
        try:
            out.append(untrained_model(name, folder, data))
        except Exception as error:  # noqa: BLE001 - report the recipe as not measured, go on with the others
            out.append(Model(f"{name} (untrained)", None, error=f"{type(error).__name__}: {error}"))
    return out


# ---------------------------------------------------------------- FLOPs


_FLOPS: dict[str, int] = {}


def forward_flops(recipe: Recipe, stage, spatial: tuple[int, ...]) -> int:
    """FLOPs of one forward pass of ``stage``'s network on ``[1, 1, *spatial]`` (FlopCounterMode:
    2 per multiply-add), on the meta device (no memory, no compute)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from flareseg.models.registry import build_network

    network = recipe.stage_network(stage)
    key = repr((network.name, sorted(network.kwargs.items()), stage.channels, tuple(spatial)))
    if key not in _FLOPS:
        with torch.device("meta"):
            net = build_network(network.name, network.kwargs, stage.channels).eval()
            x = torch.zeros(1, 1, *spatial)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(x)
        _FLOPS[key] = int(counter.get_total_flops())
    return _FLOPS[key]


def parameters(recipe: Recipe, stage) -> int:
    import torch

    from flareseg.models.registry import build_network

    network = recipe.stage_network(stage)
    with torch.device("meta"):
        net = build_network(network.name, network.kwargs, stage.channels)
    return sum(p.numel() for p in net.parameters())


def prediction_calls(model: Model, ct) -> dict[str, list[tuple[int, ...]]]:
    """The input shapes ``[B, 1, *spatial]`` of every network call ``flareseg predict`` makes on
    ``ct``, per stage. A one-stage model is run with stand-in networks (zeros: its calls do not
    depend on its output); a cascade with its real networks, as its crops follow its coarse stage."""
    from flareseg.inference.predict import segment

    recipe = read_recipe(model.directory)
    calls: dict[str, list[tuple[int, ...]]] = {stage.name: [] for stage in recipe.stages}
    if len(recipe.stages) > 1:
        loaded = load_model(model.directory, model.backend)
    else:
        loaded = LoadedModel(model.directory, recipe, {}, model.backend)
    for stage in recipe.stages:
        inner = loaded.runners.get(stage.name)

        def record(x, inner=inner, name=stage.name, classes=stage.channels):
            calls[name].append(tuple(x.shape))
            if inner is None:
                return np.zeros((x.shape[0], classes, *x.shape[2:]), np.float32)
            return inner(x)

        loaded.runners[stage.name] = record
    segment(ct, loaded)
    return calls


def _shape(spatial) -> str:
    return "x".join(str(n) for n in spatial)


def _gflops(flops: float) -> str:
    g = flops / 1e9
    return f"{g:.0f}" if g >= 100 else f"{g:.1f}" if g >= 10 else f"{g:.2f}"


def prediction_flops(recipe: Recipe, stage, calls: list[tuple[int, ...]]) -> tuple[float, str]:
    """Total FLOPs of a stage's calls, and how they add up (per slice / crop x count)."""
    if not calls:
        return 0.0, "0 (not run)"
    per_item = {shape[2:]: forward_flops(recipe, stage, shape[2:]) for shape in calls}
    items = sum(shape[0] for shape in calls)
    total = float(sum(per_item[shape[2:]] * shape[0] for shape in calls))
    if len(per_item) > 1:
        return total, f"{_gflops(total)} in {len(calls)} calls"
    (spatial, flops), = per_item.items()
    unit = "slices" if stage.sampler == "slices_2d" else "crops" if stage.crop != "whole" else "calls"
    if items == 1:
        return total, f"{_gflops(total)} at {_shape(spatial)}"
    return total, f"{_gflops(flops)} x {items} {unit} of {_shape(spatial)} = {_gflops(total)}"


# ---------------------------------------------------------------- timing


@contextlib.contextmanager
def child_stdout_to_stderr():
    """Commands measured inherit this process's stderr as their stdout, so stdout holds only the report."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def timed(argv: list[str], repeat: int, timeout_s: float) -> dict | str:
    """The fastest of ``repeat`` runs (``measure_command`` summary), or why there is none."""
    runs = []
    for _ in range(repeat):
        with child_stdout_to_stderr():
            runs.append(measure_command(argv, timeout_s=timeout_s).summary())
        if runs[-1]["returncode"] != 0:
            code = runs[-1]["returncode"]
            return f"timed out after {timeout_s:.0f} s" if code == -9 else f"failed (exit {code})"
    return min(runs, key=lambda r: r["time_s"])


def predict_argv(model: Model, ct: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "flareseg.cli.main", "predict", "-i", str(ct), "-o", str(out / "mask.nii.gz"),
            "-m", str(model.directory), "--backend", model.backend]


# ---------------------------------------------------------------- report


COLUMNS = ["model", "stage", "parameters", "forward GFLOPs at prediction input (this scan)",
           "forward GFLOPs at training patch", "backend", "seconds", "CPU s", "peak MB", "seconds / floor",
           "MB / floor"]


def row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def timing_cells(result: dict | str, floor: dict | str) -> list[str]:
    if isinstance(result, str):
        return [result, "", "", "", ""]
    cells = [f"{result['time_s']:.1f}", f"{result['auc_cpu_percent_s'] / 100:.1f}", f"{result['peak_ram_mb']:.0f}"]
    if isinstance(floor, dict):
        cells += [f"{result['time_s'] / floor['time_s']:.1f}x", f"{result['peak_ram_mb'] / floor['peak_ram_mb']:.1f}x"]
    else:
        cells += ["", ""]
    return cells


def measure_scan(ct_path: Path, chosen: list[Model], repeat: int, timeout_s: float, out: Path) -> list[str]:
    from flareseg.io import read_ct

    ct = read_ct(ct_path)
    lines = [f"### {ct_path.name}: {ct.geometry.describe()} (x y z)", "", row(COLUMNS), row(["---"] * len(COLUMNS))]
    print(f"{ct_path.name}: floor ...", file=sys.stderr, flush=True)
    floor = timed([sys.executable, "-c", FLOOR, str(ct_path), str(out / "floor.nii.gz")], repeat, timeout_s)
    lines.append(row(["floor (read + write)", "", "", "", "", "", *timing_cells(floor, floor)]))
    notes = []
    for model in chosen:
        if model.error:
            lines.append(row([model.label, "not measured: " + model.error.replace("|", "/"), *[""] * 9]))
            continue
        recipe = read_recipe(model.directory)
        print(f"{ct_path.name}: {model.label}: counting network calls ...", file=sys.stderr, flush=True)
        try:
            calls = prediction_calls(model, ct)
        except Exception as error:  # noqa: BLE001 - still time the command
            calls, notes = None, notes + [f"{model.label}: network calls not counted ({type(error).__name__}: {error})"]
        print(f"{ct_path.name}: {model.label}: timing flareseg predict ...", file=sys.stderr, flush=True)
        result = timed(predict_argv(model, ct_path, out), repeat, timeout_s)
        total_params = total_predict = total_train = 0.0
        for stage in recipe.stages:
            count = parameters(recipe, stage)
            patch = tuple(stage.size_zyx)
            train = forward_flops(recipe, stage, patch)
            total_params, total_train = total_params + count, total_train + train
            if calls is None:
                shown = "?"
            else:
                flops, shown = prediction_flops(recipe, stage, calls[stage.name])
                total_predict += flops
            lines.append(row([model.label, f"{stage.name} ({stage.sampler})", f"{count:,}", shown,
                              f"{_gflops(train)} at {_shape(patch)}", "", "", "", "", "", ""]))
        lines.append(row([model.label, f"**all {len(recipe.stages)} stage(s)**", f"{int(total_params):,}",
                          _gflops(total_predict) if calls is not None else "?", _gflops(total_train),
                          model.backend, *timing_cells(result, floor)]))
        if model.note:
            notes.append(f"{model.label}: {model.note}")
    return lines + [""] + [f"- {note}" for note in notes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", type=Path, action="append", help="a CT file or DICOM folder (repeatable)")
    parser.add_argument("--recipes", nargs="+", metavar="NAME",
                        help=f"built-in recipe names and/or {DEFAULT_MODEL} (default: all of them)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per command; the fastest is kept")
    parser.add_argument("--timeout", type=float, default=600, help="seconds before a command is killed")
    args = parser.parse_args()
    data = data_root()
    scans = args.scan or [data / "ts_example" / "example_ct_dicom"]
    names = args.recipes or [*builtin_recipes(), DEFAULT_MODEL]
    unknown = [n for n in names if n not in (*builtin_recipes(), DEFAULT_MODEL)]
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; choose from {[*builtin_recipes(), DEFAULT_MODEL]}")
    folder = Path(tempfile.mkdtemp(prefix="flareseg-recipe-cost-"))
    try:
        chosen = models(names, folder / "models", data)
        out = folder / "out"
        out.mkdir()
        report = []
        for ct in scans:
            report += measure_scan(ct, chosen, args.repeat, args.timeout, out) + [""]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"## Recipe cost: {os.cpu_count()} CPU cores, fastest of {args.repeat} run(s) per command\n")
    print("- FLOPs: torch.utils.flop_counter.FlopCounterMode, which counts a multiply-add as 2 FLOPs and counts "
          "only convolutions and matrix products (not normalisation, activations, additions); forward pass, eval "
          "mode. At prediction input: every network call `flareseg predict` makes on the scan (2D: per slice, "
          "padded to the network's size multiple, x slices; crop stages: per crop x crops). At training patch: "
          "one forward pass of [1, 1, *size_zyx].")
    print("- Untrained recipes: networks built from the registry with torch.manual_seed(0), saved as float16 "
          "as training does; their time does not depend on the weight values, except in a cascade: how many "
          "crops its fine stages get and how large they are (resampling time, memory) follow its random coarse "
          "stage's output (the FLOPs column counts the calls really made). default_model is the bundled "
          "trained model.")
    print("- Time and memory: the whole process `flareseg predict -i SCAN -o OUT.nii.gz -m MODEL_DIR --backend "
          "B` (imports, model loading, reading, preprocessing, networks, writing), sampled every 0.1 s "
          "(measure_command); seconds are wall time, CPU s the sampled CPU time of the process tree; the "
          "floor is a Python process that only reads the CT and writes a mask of its size.\n")
    print("\n".join(report))


if __name__ == "__main__":
    main()
