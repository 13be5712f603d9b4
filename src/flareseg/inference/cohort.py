"""Run a cohort on Dask: a local cluster of worker processes, or an existing cluster.

:func:`run_cohort` runs one function per case (:class:`Job`) with a model each worker process
loads once (:class:`ModelPlugin`, also on a worker that replaces a dead one), one case at a time
per worker. :func:`predict_cohort` runs :func:`flareseg.inference.predict.run_case`, the function
the in-process loop runs, which writes its mask itself; ``flareseg pseudolabel`` runs its
pseudo-labelling the same way. On a cluster of several machines, inputs and outputs must be on a
file system they all see. This process keeps the queue, largest input first, hands out a case
whenever a worker is free, and records each result as it comes back.

A worker that dies mid-case (killed, out of memory, a native crash) has its case started again on
another worker by the Dask scheduler; a case that has died with ``allowed_failures + 1`` workers
fails with a one-line reason, and the rest of the cohort goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import signal
import threading
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import dask
from distributed import Client, Future, LocalCluster, as_completed, get_worker
from distributed.diagnostics.plugin import WorkerPlugin
from distributed.scheduler import KilledWorker
from distributed.utils import CancelledError

from flareseg.errors import InputError
from flareseg.inference.cases import Case
from flareseg.inference.manifest import one_line
from flareseg.inference.outputs import OutputOptions
from flareseg.inference.model import LoadedModel
from flareseg.inference.predict import CaseResult, PredictOptions, open_model, run_case

#: Times a case may die with its worker and start again elsewhere before it fails (local clusters).
ALLOWED_FAILURES = 2
#: Automatic retries of a case whose task raised outside :func:`run_case` (e.g. no model on a worker).
TASK_RETRIES = 1

Pending = Sequence[tuple[Case, CaseResult]]


@dataclass(frozen=True)
class ClusterOptions:
    """Where a cohort runs.

    Attributes:
        workers: Worker processes of a local cluster (ignored with ``scheduler``).
        scheduler: Address of a running Dask scheduler (``tcp://host:8786``); None starts a local cluster.
        allowed_failures: Workers a case may see die under it before it fails: the local cluster's
            ``distributed.scheduler.allowed-failures`` (an existing cluster keeps its own setting).
        memory_limit_bytes: Memory per local worker, beyond which its nanny restarts it; None: the
            machine's memory divided by ``workers``.
    """

    workers: int = 2
    scheduler: str | None = None
    allowed_failures: int = ALLOWED_FAILURES
    memory_limit_bytes: int | None = None


@dataclass(frozen=True)
class LocalShape:
    """How a local cluster is laid out: ``workers`` processes running one case at a time each, the
    network of each using ``threads`` CPU threads, each restarted beyond ``memory_limit_bytes``."""

    workers: int
    threads: int
    memory_limit_bytes: int


def local_shape(cluster: ClusterOptions, cores: int | None = None, memory_bytes: int | None = None) -> LocalShape:
    """Split the machine (``cores`` CPUs and ``memory_bytes`` of memory; default: this machine's)
    between ``cluster.workers`` local workers: cores // workers threads (at least 1) and memory / workers."""
    if cores is None:
        from dask.system import CPU_COUNT  # affinity and cgroup CPU quotas counted

        cores = CPU_COUNT
    if memory_bytes is None:
        from distributed.system import MEMORY_LIMIT  # the machine's, or the cgroup's when lower

        memory_bytes = MEMORY_LIMIT
    return LocalShape(cluster.workers, max(1, cores // cluster.workers),
                      cluster.memory_limit_bytes or memory_bytes // cluster.workers)


def input_bytes(path: Path) -> int:
    """Size of a scan on disk: a file's size, or the total of the files of a DICOM folder (0 if unreadable)."""
    try:
        if path.is_dir():
            return sum(entry.stat().st_size for entry in os.scandir(path) if entry.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def largest_first(jobs: Sequence[Job]) -> list[Job]:
    """``jobs`` in the order a cohort hands them out: largest input first, input order among equals."""
    return sorted(jobs, key=lambda job: -input_bytes(Path(job.input)))


class ModelPlugin(WorkerPlugin):
    """Loads a model once per worker process, ``load(threads)``: when registered, and on every worker
    that joins later (a replacement for one that died). A model that fails to load fails the
    registration. ``threads`` is the worker's share of the cores on a local cluster, else None.

    With ``ignore_interrupt`` (the workers of a local cluster, which share the terminal of the run),
    the worker ignores Ctrl-C: the run stops its cluster itself, without a traceback per worker.
    """

    def __init__(self, load: Callable[[int | None], Any], threads: int | None = None,
                 ignore_interrupt: bool = False) -> None:
        self.load = load
        self.threads = threads
        self.ignore_interrupt = ignore_interrupt
        self.model = None

    def setup(self, worker) -> None:
        if self.ignore_interrupt and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.lock = threading.Lock()  # one case at a time, whatever the worker's threads
        self.model = self.load(self.threads)

    def teardown(self, worker) -> None:
        self.model = None


@dataclass(frozen=True)
class Job:
    """One case of a cohort: ``function(model, *args)`` on a worker, with the model its
    :class:`ModelPlugin` loaded. ``name`` is unique in the run; ``input`` is the scan (its size
    orders the queue)."""

    name: str
    input: Path
    function: Callable[..., Any]
    args: tuple = ()


def run_on_worker(job: Job, plugin: str) -> Any:
    """The task of one job: its function with this worker's model, one job at a time per worker."""
    worker = get_worker()
    loaded = worker.plugins.get(plugin)
    if getattr(loaded, "model", None) is None:
        raise RuntimeError(f"the model is not loaded on worker {worker.address} (see its log)")
    with loaded.lock:
        return job.function(loaded.model, *job.args)


@contextmanager
def local_cluster(cluster: ClusterOptions) -> Iterator[LocalCluster]:
    """A local cluster of ``cluster.workers`` worker processes (each under a nanny that restarts it
    when it dies), one task at a time each, with ``cluster.allowed_failures``, a memory limit, and
    their share of the cores for OpenMP/BLAS (:func:`local_shape`)."""
    shape = local_shape(cluster)
    threads = {f"distributed.nanny.pre-spawn-environ.{name}": shape.threads  # Dask's default is 1
               for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    with dask.config.set({"distributed.scheduler.allowed-failures": cluster.allowed_failures, **threads}):
        with LocalCluster(n_workers=shape.workers, threads_per_worker=1, processes=True,
                          memory_limit=shape.memory_limit_bytes, dashboard_address=None,
                          silence_logs=logging.CRITICAL) as local:
            yield local


def connect(cluster: ClusterOptions, stack: ExitStack) -> tuple[Client, int | None]:
    """A client of the cluster (started here when local, closed with ``stack``), and the threads a
    worker's network uses: on a local cluster its share of the cores, on an existing one None."""
    if cluster.scheduler:
        try:
            return stack.enter_context(Client(cluster.scheduler)), None
        except (OSError, TimeoutError) as error:
            raise InputError(f"{cluster.scheduler}: cannot reach the Dask scheduler ({one_line(error)})") from None
    local = stack.enter_context(local_cluster(cluster))
    return stack.enter_context(Client(local)), local_shape(cluster).threads


def run_cohort(jobs: Sequence[Job], load: Callable[[int | None], Any], cluster: ClusterOptions,
               on_done: Callable[[Job, Any, str], None], progress: dict | None = None) -> None:
    """Run ``jobs`` on a Dask cluster, largest input first, each worker with the model ``load``
    gives it (:class:`ModelPlugin`), calling ``on_done(job, outcome, error)`` in this process as
    each job ends: the function's return value and ``""``, or None and a one-line reason (a
    non-empty ``error`` is what marks a failure). A local cluster starts no more workers than jobs.
    ``progress``: the arguments of a tqdm progress bar shown once the cluster is reached (None: none).

    Raises:
        InputError: The scheduler cannot be reached, or was lost mid-run (the jobs not finished
            are never passed to ``on_done``).
        FlaresegError: The model does not load on the workers (the error ``load`` raised there).
    """
    from tqdm import tqdm

    if not jobs:
        return
    if not cluster.scheduler:  # no idle local workers, each holding a model
        cluster = dataclasses.replace(cluster, workers=min(cluster.workers, len(jobs)))
    with ExitStack() as stack:
        client, threads = connect(cluster, stack)
        plugin = f"flareseg-model-{uuid.uuid4().hex[:8]}"
        try:
            client.register_plugin(ModelPlugin(load, threads, ignore_interrupt=not cluster.scheduler), name=plugin)
            with tqdm(**{"total": len(jobs), **(progress or {})}, disable=progress is None) as bar:
                def done(job: Job, outcome: Any, error: str) -> None:
                    bar.update()
                    on_done(job, outcome, error)

                _run_queue(client, largest_first(jobs), _Submitter(client, plugin), done)
        finally:
            if cluster.scheduler:  # leave a shared cluster without this run's model
                with contextlib.suppress(Exception):  # a lost scheduler: the run's own error says so
                    client.unregister_worker_plugin(plugin)


def predict_cohort(pending: Pending, options: PredictOptions, outputs: OutputOptions, cluster: ClusterOptions,
                   on_result: Callable[[CaseResult], None] | None = None, progress: bool = True) -> None:
    """Predict ``pending`` (from :func:`flareseg.inference.predict.plan_cases`) on a Dask cluster
    (:func:`run_cohort`) with :func:`run_case`, the function of the in-process loop, filling each
    result in place and calling ``on_result(result)`` as each case ends; a case whose worker died
    too often fails with that reason.

    Raises:
        InputError: The scheduler cannot be reached, or was lost mid-run.
        FlaresegError: The model does not load on the workers.
    """
    def done(job: Job, outcome: CaseResult | None, error: str) -> None:
        result = job.args[1]
        if error:
            result.status, result.error = "failed", error
        else:
            for field in dataclasses.fields(outcome):
                setattr(result, field.name, getattr(outcome, field.name))
        if on_result is not None:
            on_result(result)

    jobs = [Job(case.name, Path(case.input), _predict_job, (case, result, options, outputs))
            for case, result in pending]
    run_cohort(jobs, functools.partial(open_model_with, options), cluster, done,
               {"desc": "predict", "unit": "scan"} if progress else None)


def open_model_with(options: PredictOptions, threads: int | None) -> LoadedModel:
    """:func:`open_model` on a worker: ``threads`` (its share of the cores) unless the options set theirs."""
    return open_model(dataclasses.replace(options, threads=options.threads or threads))


def _predict_job(model: LoadedModel, case: Case, result: CaseResult, options: PredictOptions,
                 outputs: OutputOptions) -> CaseResult:
    return run_case(case, result, model, options, outputs, own_process=True)


@dataclass
class _Submitter:
    """Hands one job to the cluster as a task with a key unique to this run."""

    client: Client
    plugin: str
    token: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:8])

    def __call__(self, job: Job, priority: int) -> Future:
        return self.client.submit(run_on_worker, job, self.plugin, key=f"flareseg-{job.name}-{self.token}",
                                  priority=priority, retries=TASK_RETRIES, pure=False)


def _run_queue(client: Client, queue: list[Job], submit: _Submitter,
               on_done: Callable[[Job, Any, str], None]) -> None:
    """Keep every worker busy with one job from the front of ``queue`` until all are done."""
    running: dict[Future, Job] = {}
    completed = as_completed()

    def feed() -> None:
        slots = max(1, len(client.nthreads()))  # one job per worker process
        while queue and len(running) < slots:
            job = queue.pop(0)
            future = submit(job, priority=len(queue))
            running[future] = job
            completed.add(future)

    feed()
    for future in completed:
        job = running.pop(future)
        outcome, error = _outcome(future, job, pending=len(queue) + len(running))
        feed()  # the freed worker gets its next job before the caller records this one
        on_done(job, outcome, error)


def _outcome(future: Future, job: Job, pending: int) -> tuple[Any, str]:
    """A finished task's ``(return value, "")``, or ``(None, one-line failure)``."""
    try:
        return future.result(), ""
    except KilledWorker as error:
        return None, killed_reason(error)
    except CancelledError:
        raise InputError(f"the Dask scheduler lost case {job.name} ({pending} more not finished); "
                         "run the command again to do the cases still pending") from None
    except Exception as error:  # noqa: BLE001 - one case's failure must not end the cohort
        return None, one_line(f"{type(error).__name__}: {error}")


def killed_reason(error: KilledWorker) -> str:
    """One line for a case during which ``allowed_failures + 1`` workers died."""
    last = getattr(error.last_worker, "address", "?")
    return (f"its worker process died {error.allowed_failures + 1} times while running it (out of memory, "
            f"a crash in native code, or killed; last worker {last}); not tried again")
