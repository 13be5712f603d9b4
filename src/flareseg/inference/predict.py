"""Segment CT files or DICOM folders: the Python API behind ``flareseg predict``."""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from flareseg.errors import FlaresegError
from flareseg.inference.cases import Case, name_collisions
from flareseg.inference.cascade import segment_canonical
from flareseg.inference.model import LoadedModel, load_model
from flareseg.inference.options import PredictOptions
from flareseg.inference.outputs import (
    OutputOptions,
    check_outputs,
    extras_present,
    mask_is_complete,
    mask_suffix,
    write_extras,
    write_mask,
)
from flareseg.io import Volume, read_ct, write_labelmap
from flareseg.io.atomic import output_folder
from flareseg.io.write import write_suffix
from flareseg.labels import label_name
from flareseg.preprocessing.orientation import to_canonical


def open_model(options: PredictOptions) -> LoadedModel:
    """Load the model the options name (the bundled default when ``model_dir`` is None)."""
    from flareseg.data import default_model_dir

    return load_model(options.model_dir or default_model_dir(), options.backend, options.device, options.threads)


def segment(ct: Volume, model: LoadedModel, postprocess: bool = True, second_chance: bool = True,
            fine_boundaries: bool = False, components: dict[int, int] | None = None) -> Volume:
    """Segment a CT volume; the label map (uint8 FLARE ids) has the CT's exact geometry.
    ``components``, when given, receives class id -> connected components before the
    post-processing (:func:`flareseg.inference.cascade.segment_canonical`)."""
    canonical, reorientation = to_canonical(ct)
    labels = segment_canonical(canonical.array, canonical.geometry.spacing_zyx_mm, model, postprocess, second_chance,
                               fine_boundaries, components=components)
    return Volume(reorientation.invert(labels), ct.geometry)


def segment_with_entropy(ct: Volume, model: LoadedModel, postprocess: bool = True, second_chance: bool = True,
                         fine_boundaries: bool = False) -> tuple[Volume, np.ndarray]:
    """:func:`segment`, and how unsure the network was of each voxel it labels (flareseg's extension).

    Returns:
        The label map (as :func:`segment` returns it, voxel for voxel), and float32 ``[z, y, x]``
        on the CT's grid: at each labelled voxel, the entropy in nats of the softmax of the stage
        that labelled it, computed on that stage's own grid and carried over by nearest neighbour
        (``entropy`` of :func:`flareseg.inference.cascade.segment_canonical`); 0 at background.
    """
    canonical, reorientation = to_canonical(ct)
    entropy = np.zeros(canonical.array.shape, np.float32)
    labels = segment_canonical(canonical.array, canonical.geometry.spacing_zyx_mm, model, postprocess, second_chance,
                               fine_boundaries, entropy=entropy)
    entropy[labels == 0] = 0
    return Volume(reorientation.invert(labels), ct.geometry), reorientation.invert(entropy)


def predict(input: str | os.PathLike, output: str | os.PathLike | None = None,
            model: LoadedModel | None = None, options: PredictOptions = PredictOptions()) -> Volume:
    """Segment one CT (NIfTI/NRRD/MHA file or DICOM series folder).

    Args:
        input: The CT.
        output: Where to write the mask (.nii.gz, .nii, .nrrd, .mha); None writes nothing.
        model: A model from :func:`open_model`, to reuse across calls; None loads ``options``'s.
        options: Model and runtime settings.

    Returns:
        The label map, on the input's grid.
    """
    if output is not None:
        write_suffix(Path(output))  # a bad file type fails before the work, not after
    if model is None:
        ct, model = read_while_loading(input, None, options)
    else:
        ct = read_ct(input, force=options.force)
    mask = segment(ct, model, options.postprocess, options.second_chance, options.fine_boundaries)
    if output is not None:
        write_labelmap(mask.array, mask.geometry, output)
    return mask


@dataclass
class CaseResult:
    """Outcome of one scan of a run: ``status`` is ``done``, ``skipped`` (its mask existed), ``failed``
    or ``pending`` (not finished yet); ``peak_memory_mb`` is the peak resident memory (MB) of the
    process that ran it, while it ran it (None when unknown or not run); ``components_before_postprocessing``
    is organ name -> its 26-connected components in the prediction before the post-processing kept
    the largest (None when not run; what ``flareseg qc`` reports beside the mask's own count)."""

    case: str
    input: str
    output: str
    status: str
    seconds: float = 0.0
    error: str = ""
    acquisition: int | None = None
    statistics: dict | None = None
    peak_memory_mb: float | None = None
    components_before_postprocessing: dict[str, int] | None = None


@dataclass
class RunReport:
    """Outcome of predicting several scans, one :class:`CaseResult` each, in input order."""

    results: list[CaseResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(result.status == status for result in self.results)

    @property
    def failed(self) -> list[CaseResult]:
        return [result for result in self.results if result.status == "failed"]

    def summary(self) -> dict:
        """The run as plain data (``summary.json``): counts and one entry per scan."""
        from flareseg import __version__

        counts = {status: self.count(status) for status in ("done", "skipped", "failed", "pending")}
        cases = [{key: value for key, value in vars(result).items() if key != "statistics"} for result in self.results]
        return {"flareseg": __version__, **counts, "cases": cases}


def predict_cases(cases: Sequence[Case], output_dir: str | os.PathLike, options: PredictOptions = PredictOptions(),
                  outputs: OutputOptions = OutputOptions(), progress: bool = True, report: RunReport | None = None,
                  failed_before: Mapping[tuple[str, str], str] | None = None,
                  on_result: Callable[[CaseResult], None] | None = None) -> RunReport:
    """Segment several scans into ``output_dir``, one mask each (``CASE.nii.gz``), in this process.

    A bad scan is a failed entry, not the end of the run; two scans that would write the same mask
    both fail. A mask that exists complete (with the extras asked for) is kept (``skipped``) unless
    ``outputs.overwrite``. ``report`` is filled as the run goes, so an interrupted run still has one.
    ``failed_before`` and ``on_result`` are as :func:`plan_cases` and :func:`run_cases` take them.
    """
    report = RunReport() if report is None else report
    pending = plan_cases(cases, output_dir, outputs, report, failed_before)
    run_cases(pending, options, outputs, progress, on_result)
    return report


def plan_cases(cases: Sequence[Case], output_dir: str | os.PathLike, outputs: OutputOptions, report: RunReport,
               failed_before: Mapping[tuple[str, str], str] | None = None) -> list[tuple[Case, CaseResult]]:
    """Add a result per case to ``report`` and return the cases still to predict (status ``pending``).

    Two cases that would write one mask, and a mask that would replace an input, fail. A complete
    mask (with the extras asked for) is ``skipped`` unless ``outputs.overwrite``. A case listed in
    ``failed_before`` (``(case, absolute input) -> error``, from the previous run's manifest) fails
    again with that error, without being run, unless ``outputs.overwrite``.
    """
    output_dir = Path(output_dir)
    output_folder(output_dir)
    suffix = mask_suffix(outputs.output_type)
    clashes = {case: group for group in name_collisions(cases).values() for case in group}
    inputs = {case.input.resolve() for case in cases}
    failed_before = {} if outputs.overwrite or failed_before is None else failed_before
    pending = []
    for case in cases:
        result = CaseResult(case.name, str(Path(case.input).absolute()),  # readable from any folder (flareseg qc)
                            str(output_dir / (case.name + suffix)), "pending", acquisition=case.acquisition)
        report.results.append(result)
        if case in clashes:
            others = ", ".join(str(other.input.name) for other in clashes[case] if other is not case)
            result.status, result.error = "failed", f"{case.input.name} and {others} would both write {case.name}{suffix}"
        elif Path(result.output).resolve() in inputs:
            result.status, result.error = "failed", f"its mask {result.output} would overwrite an input scan"
        elif (not outputs.overwrite and mask_is_complete(Path(result.output), outputs.output_type, case.input)
              and extras_present(Path(result.output), outputs)):
            result.status = "skipped"
        elif (result.case, result.input) in failed_before:
            result.status, result.error = "failed", failed_before[(result.case, result.input)]
        else:
            pending.append((case, result))
    return pending


def run_cases(pending: Sequence[tuple[Case, CaseResult]], options: PredictOptions, outputs: OutputOptions,
              progress: bool = True, on_result: Callable[[CaseResult], None] | None = None) -> None:
    """Predict ``pending`` (from :func:`plan_cases`) one after the other in this process, with one
    model; ``on_result(result)`` is called as each case ends."""
    from tqdm import tqdm

    model = open_model(options) if pending else None
    for case, result in tqdm(pending, desc="predict", unit="scan", disable=not progress):
        run_case(case, result, model, options, outputs)
        if on_result is not None:
            on_result(result)


def run_case(case: Case, result: CaseResult, model: LoadedModel, options: PredictOptions,
             outputs: OutputOptions, own_process: bool = False) -> CaseResult:
    """Predict one case of a run and record the outcome in ``result`` (``done``, or ``failed`` with
    its error; seconds, peak memory, statistics); the mask goes to ``result.output``. The peak
    memory is the case's own in a process flareseg owns (``own_process``: a cohort's worker,
    whose high-water mark is reset per case), else the process's peak so far (the caller's
    process is left as it is).

    Any error of the case is caught: one scan never ends the run (only KeyboardInterrupt and the
    like pass). This is what a run's worker process, local or on a cluster, runs per case.
    """
    start = time.perf_counter()
    memory = PeakMemory(reset=own_process)
    components: dict[int, int] = {}
    try:
        result.statistics = predict_case(case, Path(result.output), model, options, outputs, statistics_file=False,
                                         components=components)
        result.components_before_postprocessing = {label_name(c): n for c, n in sorted(components.items())}
    except (FlaresegError, OSError, RuntimeError, ValueError) as error:
        result.status, result.error = "failed", str(error)
    except Exception as error:  # noqa: BLE001 - an unforeseen failure of one scan must not end the run
        result.status, result.error = "failed", f"{type(error).__name__}: {error}"
    else:
        result.status, result.seconds = "done", round(time.perf_counter() - start, 3)
    result.peak_memory_mb = memory.peak_mb()
    return result


def read_while_loading(input: str | os.PathLike, acquisition: int | None, options: PredictOptions,
                       reading: Future[Volume] | None = None) -> tuple[Volume, LoadedModel]:
    """Read a CT in a second thread while this one loads the options' model: the two wait on
    different things (decompression, file reads, imports and session set-up): reading and loading
    take 0.28 s instead of 0.34-0.46 s for a 512x512x109 scan with ONNX, and PyTorch's import
    overlaps the read. Errors are raised as loading, then reading, would raise them: a model
    that does not load first, as it concerns every scan.

    ``reading``: the read of ``input`` (:func:`flareseg.io.read_ct`), when the caller started it
    already (``flareseg predict`` starts it before this module imports); else it starts here."""
    if reading is not None:
        model = open_model(options)
        return reading.result(), model
    with ThreadPoolExecutor(1, thread_name_prefix="flareseg-read") as pool:
        return read_while_loading(input, acquisition, options, pool.submit(read_ct, input, acquisition, options.force))


class PeakMemory:
    """Peak resident memory of this process: on Linux the kernel's high-water mark (``VmHWM``),
    from now on with ``reset`` (``/proc/self/clear_refs``, which also resets ``getrusage``'s
    ``ru_maxrss``: only for processes flareseg owns), else over the process's life; elsewhere, or
    where the reset is not allowed, the current resident size at :meth:`peak_mb` (a lower bound)."""

    def __init__(self, reset: bool = False) -> None:
        if not reset:  # the kernel's peak over the process's life, where there is one
            self._kernel_peak = Path("/proc/self/status").is_file()
            return
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self._kernel_peak = True
        except OSError:
            self._kernel_peak = False

    def peak_mb(self) -> float | None:
        """The peak (MB, 2**20 bytes) since this object was created; None if it cannot be known."""
        if self._kernel_peak:
            try:
                with open("/proc/self/status") as handle:
                    for line in handle:
                        if line.startswith("VmHWM:"):
                            return round(int(line.split()[1]) / 1024, 1)
            except (OSError, ValueError, IndexError):
                pass
        try:
            import psutil

            return round(psutil.Process().memory_info().rss / 2**20, 1)
        except Exception:  # noqa: BLE001 - memory is reported, never a reason to fail a case
            return None


def predict_case(case: Case, path: Path, model: LoadedModel | None, options: PredictOptions,
                 outputs: OutputOptions, statistics_file: bool = True,
                 components: dict[int, int] | None = None, reading: Future[Volume] | None = None) -> dict | None:
    """Segment one scan and write its mask (and extras) to ``path``; returns its statistics if asked for.
    ``model`` None loads the options' model while the scan is read (:func:`read_while_loading`).
    ``components`` receives the components per class before the post-processing, as :func:`segment` says.
    ``reading``: the scan's read, when the caller started it already, after :func:`check_outputs`."""
    if reading is None:
        check_outputs(case.input, path, outputs, case.acquisition)
    if model is None:
        ct, model = read_while_loading(case.input, case.acquisition, options, reading)
    else:
        ct = read_ct(case.input, case.acquisition, options.force) if reading is None else reading.result()
    mask = segment(ct, model, options.postprocess, options.second_chance, options.fine_boundaries, components)
    write_mask(mask, case.input, path, outputs.output_type, case.acquisition)
    return write_extras(ct, mask, path, outputs, statistics_file)
