"""Predict a cohort on Dask: a local cluster of worker processes, or an existing cluster.

Each worker process loads the model once (:class:`ModelPlugin`, also on a worker that replaces a
dead one) and runs one case at a time with :func:`flareseg.inference.predict.run_case`, the
function the in-process loop runs, writing its mask itself (on a cluster of several machines,
inputs and the output folder must be on a file system they all see). This process keeps the queue,
largest input first, hands out a case whenever a worker thread is free, and records each result as
it comes back.

A worker that dies mid-case (killed, out of memory, a native crash) has its case started again on
another worker by the Dask scheduler; a case that has died with ``allowed_failures + 1`` workers
fails with a one-line reason, and the rest of the cohort goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import dask
from distributed import Client, Future, LocalCluster, as_completed, get_worker
from distributed.diagnostics.plugin import WorkerPlugin
from distributed.scheduler import KilledWorker
from distributed.utils import CancelledError

from flareseg.errors import InputError
from flareseg.inference.cases import Case
from flareseg.inference.manifest import one_line
from flareseg.inference.outputs import OutputOptions
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


def largest_first(pending: Pending) -> list[tuple[Case, CaseResult]]:
    """``pending`` in the order a cohort hands it out: largest input first, input order among equals."""
    return sorted(pending, key=lambda item: -input_bytes(Path(item[0].input)))


class ModelPlugin(WorkerPlugin):
    """Loads the model once per worker process: when registered, and on every worker that joins later
    (a replacement for one that died). A model that fails to load fails the registration.

    With ``ignore_interrupt`` (the workers of a local cluster, which share the terminal of the run),
    the worker ignores Ctrl-C: the run stops its cluster itself, without a traceback per worker.
    """

    def __init__(self, options: PredictOptions, ignore_interrupt: bool = False) -> None:
        self.options = options
        self.ignore_interrupt = ignore_interrupt
        self.model = None

    def setup(self, worker) -> None:
        if self.ignore_interrupt and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.lock = threading.Lock()  # one case at a time, whatever the worker's threads
        self.model = open_model(self.options)

    def teardown(self, worker) -> None:
        self.model = None


def predict_on_worker(case: Case, result: CaseResult, plugin: str, options: PredictOptions,
                      outputs: OutputOptions) -> CaseResult:
    """The task of one case: :func:`run_case` with the model of this worker's :class:`ModelPlugin`."""
    worker = get_worker()
    loaded = worker.plugins.get(plugin)
    if getattr(loaded, "model", None) is None:
        raise RuntimeError(f"the model is not loaded on worker {worker.address} (see its log)")
    with loaded.lock:
        return run_case(case, result, loaded.model, options, outputs, own_process=True)


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


def connect(cluster: ClusterOptions, options: PredictOptions, stack: ExitStack) -> tuple[Client, PredictOptions]:
    """A client of the cluster (started here when local, closed with ``stack``) and the predict
    options its workers use: on a local cluster, ``threads`` defaults to the worker's share of cores."""
    if cluster.scheduler:
        try:
            return stack.enter_context(Client(cluster.scheduler)), options
        except (OSError, TimeoutError) as error:
            raise InputError(f"{cluster.scheduler}: cannot reach the Dask scheduler ({one_line(error)})") from None
    local = stack.enter_context(local_cluster(cluster))
    client = stack.enter_context(Client(local))
    return client, dataclasses.replace(options, threads=options.threads or local_shape(cluster).threads)


def predict_cohort(pending: Pending, options: PredictOptions, outputs: OutputOptions, cluster: ClusterOptions,
                   on_result: Callable[[CaseResult], None] | None = None, progress: bool = True) -> None:
    """Predict ``pending`` (from :func:`flareseg.inference.predict.plan_cases`) on a Dask cluster,
    filling each result in place and calling ``on_result(result)`` as each case ends.

    Raises:
        InputError: The scheduler cannot be reached, or was lost mid-run (the cases not finished stay
            ``pending``).
        FlaresegError: The model does not load on the workers (the error :func:`open_model` raised there).
    """
    if not pending:
        return
    with ExitStack() as stack:
        client, options = connect(cluster, options, stack)
        plugin = f"flareseg-model-{uuid.uuid4().hex[:8]}"
        try:
            client.register_plugin(ModelPlugin(options, ignore_interrupt=not cluster.scheduler), name=plugin)
            _run_queue(client, largest_first(pending), _Submitter(client, plugin, options, outputs),
                       on_result, progress)
        finally:
            if cluster.scheduler:  # leave a shared cluster without this run's model
                with contextlib.suppress(Exception):  # a lost scheduler: the run's own error says so
                    client.unregister_worker_plugin(plugin)


@dataclass
class _Submitter:
    """Hands one case to the cluster as a task with a key unique to this run."""

    client: Client
    plugin: str
    options: PredictOptions
    outputs: OutputOptions
    token: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:8])

    def __call__(self, case: Case, result: CaseResult, priority: int) -> Future:
        return self.client.submit(predict_on_worker, case, result, self.plugin, self.options, self.outputs,
                                  key=f"flareseg-predict-{case.name}-{self.token}", priority=priority,
                                  retries=TASK_RETRIES, pure=False)


def _run_queue(client: Client, queue: list[tuple[Case, CaseResult]], submit: _Submitter,
               on_result: Callable[[CaseResult], None] | None, progress: bool) -> None:
    """Keep every worker thread busy with one case from the front of ``queue`` until all are done."""
    from tqdm import tqdm

    running: dict[Future, CaseResult] = {}
    completed = as_completed()

    def feed() -> None:
        slots = max(1, len(client.nthreads()))  # one case per worker process
        while queue and len(running) < slots:
            case, result = queue.pop(0)
            future = submit(case, result, priority=len(queue))
            running[future] = result
            completed.add(future)

    with tqdm(total=len(queue), desc="predict", unit="scan", disable=not progress) as bar:
        feed()
        for future in completed:
            result = running.pop(future)
            _collect(future, result, pending=len(queue) + len(running))
            feed()  # the freed worker gets its next case before the manifest is written
            bar.update()
            if on_result is not None:
                on_result(result)


def _collect(future: Future, result: CaseResult, pending: int) -> None:
    """Copy a finished task's outcome into ``result``: its own, or a one-line failure."""
    try:
        outcome = future.result()
    except KilledWorker as error:
        result.status, result.error = "failed", killed_reason(error)
    except CancelledError:
        raise InputError(f"the Dask scheduler lost case {result.case} ({pending} more not finished); "
                         "run the command again to do the cases still pending") from None
    except Exception as error:  # noqa: BLE001 - one case's failure must not end the cohort
        result.status, result.error = "failed", one_line(f"{type(error).__name__}: {error}")
    else:
        for field in dataclasses.fields(outcome):
            setattr(result, field.name, getattr(outcome, field.name))


def killed_reason(error: KilledWorker) -> str:
    """One line for a case during which ``allowed_failures + 1`` workers died."""
    last = getattr(error.last_worker, "address", "?")
    return (f"its worker process died {error.allowed_failures + 1} times while running it (out of memory, "
            f"a crash in native code, or killed; last worker {last}); not tried again")
