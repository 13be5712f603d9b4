"""Efficiency metrics of a prediction command, sampled as FLARE does (every 0.1 s).

The command runs as a subprocess; every ``interval_s`` the resident memory and CPU use of
its whole process tree are read with psutil, and the GPU memory in use with NVML when an
NVIDIA GPU and ``pynvml`` are present. Areas under the curves are sums of samples times
the interval (MB*s, %*s), as the FLARE efficiency scripts compute them.
"""

from __future__ import annotations

import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field

import psutil

from flareseg.errors import InputError

MB = 1024 * 1024


@dataclass
class Trace:
    """What one run of a command used, sample by sample.

    Attributes:
        interval_s: Sampling interval in seconds.
        times_s: Time of each sample since the start.
        ram_mb: Resident memory of the process tree (MB, 2^20 bytes) at each sample.
        cpu_percent: CPU use of the process tree (100 = one core busy) at each sample.
        gpu_mb: GPU memory in use (MB) at each sample, or empty without a GPU.
        wall_s: Wall time from start to exit (taken at the exit, not at the next sample).
        returncode: Exit code of the command.
    """

    interval_s: float
    times_s: list[float] = field(default_factory=list)
    ram_mb: list[float] = field(default_factory=list)
    cpu_percent: list[float] = field(default_factory=list)
    gpu_mb: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    returncode: int = 0

    def summary(self) -> dict[str, float | int | None]:
        """Running time, peaks and areas under the curves (FLARE's efficiency figures)."""
        gpu = bool(self.gpu_mb)
        return {
            "time_s": self.wall_s,
            "peak_ram_mb": max(self.ram_mb, default=0.0),
            "auc_ram_mb_s": sum(self.ram_mb) * self.interval_s,
            "auc_cpu_percent_s": sum(self.cpu_percent) * self.interval_s,
            "peak_gpu_mb": max(self.gpu_mb) if gpu else None,
            "auc_gpu_mb_s": sum(self.gpu_mb) * self.interval_s if gpu else None,
            "returncode": self.returncode,
        }


def measure_command(command: list[str] | str, interval_s: float = 0.1, timeout_s: float | None = None) -> Trace:
    """Run a command to its end and sample its resource use.

    Args:
        command: Program and arguments (a string is split like a shell would, without a shell).
        interval_s: Sampling interval; FLARE uses 0.1 s.
        timeout_s: Kill the command after this many seconds (returncode -9).

    Returns:
        The trace; the command's own output goes to this process's stdout/stderr.

    Raises:
        InputError: The program cannot be started (not found, not executable).
    """
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    gpu = _GpuMemory.open()
    trace = Trace(interval_s)
    start = time.perf_counter()
    try:
        process = psutil.Popen(argv)
    except OSError as error:
        if gpu:
            gpu.close()
        raise InputError(f"cannot run {argv[0]!r}: {error.strerror}") from None
    tree: dict[int, psutil.Process] = {process.pid: process}
    ended = threading.Event()  # set by a waiter at the exit itself, so the time is not rounded up to a sample
    exit_: list = []  # [returncode, time]: the waiter alone reaps the process
    waiter = threading.Thread(target=_wait, args=(process, exit_, ended), daemon=True)
    waiter.start()
    try:
        while True:
            now = time.perf_counter() - start
            ram, cpu = _sample_tree(process, tree)
            trace.times_s.append(now)
            trace.ram_mb.append(ram / MB)
            trace.cpu_percent.append(cpu)
            if gpu:
                trace.gpu_mb.append(gpu.used_mb())
            if timeout_s is not None and now > timeout_s and not ended.is_set():
                break  # killed below
            if ended.wait(max(0.0, interval_s - (time.perf_counter() - start - now))):
                break
    finally:
        if not ended.is_set():  # timed out, or this loop failed: the command does not outlive its measure
            _kill_tree(process)
        waiter.join()
        trace.returncode, end = exit_ if exit_ else (process.returncode, time.perf_counter())
        trace.wall_s = end - start
        if gpu:
            gpu.close()
    return trace


def _wait(process: psutil.Popen, exit_: list, ended: threading.Event) -> None:
    try:
        exit_.extend([process.wait(), time.perf_counter()])
    finally:
        ended.set()


def _sample_tree(root: psutil.Process, tree: dict[int, psutil.Process]) -> tuple[float, float]:
    """Resident bytes and CPU percent summed over a process and its descendants."""
    try:
        for child in root.children(recursive=True):
            tree.setdefault(child.pid, child)
    except psutil.Error:
        pass
    ram = cpu = 0.0
    for pid, proc in list(tree.items()):
        try:
            with proc.oneshot():
                ram += proc.memory_info().rss
                cpu += proc.cpu_percent(None)
        except psutil.Error:  # exited between listing and sampling
            tree.pop(pid, None)
    return ram, cpu


def _kill_tree(root: psutil.Process) -> None:
    for proc in [*root.children(recursive=True), root]:
        try:
            proc.kill()
        except psutil.Error:
            pass


class _GpuMemory:
    """GPU memory in use on device 0, through NVML; absent without pynvml or a GPU."""

    def __init__(self, nvml, handle) -> None:
        self._nvml, self._handle = nvml, handle

    @classmethod
    def open(cls) -> _GpuMemory | None:
        try:
            import pynvml

            pynvml.nvmlInit()
            return cls(pynvml, pynvml.nvmlDeviceGetHandleByIndex(0))
        except Exception:  # no pynvml, no driver or no device: measure without GPU
            return None

    def used_mb(self) -> float:
        return self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used / MB

    def close(self) -> None:
        self._nvml.nvmlShutdown()
