"""Training on several processes with PyTorch's DistributedDataParallel, launched by PyTorch's
elastic launcher (``torchrun``, :mod:`torch.distributed.run`).

``flareseg train --nproc N`` starts ``torchrun --standalone --nproc-per-node N -m flareseg train
...`` (:func:`launch`); ``torchrun ... -m flareseg train ...`` started by hand, by Slurm or by
Kubernetes works as well. Each process reads its rank and the world size from the variables
torchrun sets (``RANK``, ``WORLD_SIZE``: :func:`world_from_environment`). Gradients are averaged
over the processes (gloo on CPU, nccl on CUDA); each draws its own share of every batch; rank 0
alone reads the cases into the cache, validates and writes checkpoints, logs and the model.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Mapping

import torch


@dataclass(frozen=True)
class World:
    """This process's ``rank`` among ``size`` training processes (one process: 0 of 1)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Whether this process writes the run's files (rank 0)."""
        return self.rank == 0


def world_from_environment(environ: Mapping[str, str] = os.environ) -> World:
    """The world torchrun describes in ``RANK`` and ``WORLD_SIZE`` (one process without them)."""
    size = int(environ.get("WORLD_SIZE", "1"))
    return World(int(environ.get("RANK", "0")), size) if size > 1 else World()


@contextlib.contextmanager
def process_group(world: World, device: str):
    """Join the processes of ``world`` (gloo on CPU, nccl on CUDA) for the block; nothing for one."""
    if world.size == 1:
        yield
        return
    import torch.distributed as dist

    if device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    # rank 0 may read the cases into the cache (a teacher predicting every unlabelled one) for
    # hours while the others wait in a collective: far past the default timeout of 30 minutes
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", timeout=datetime.timedelta(hours=48))
    try:
        yield
    finally:
        dist.destroy_process_group()


def on_main(world: World, work: Callable[[], object], repeat: bool = False):
    """Run ``work`` on rank 0 and return its result on every rank: the other ranks receive it
    (pickled), or, with ``repeat``, run ``work`` themselves once rank 0 is done (e.g. caches rank 0
    filled, which they then find full). An error on rank 0 is raised on every rank, so that none
    is left waiting."""
    if world.size == 1:
        return work()
    import torch.distributed as dist

    message: list = [None]
    if world.main:
        try:
            result = work()
        except Exception as error:  # passed on, then raised here too
            message[0] = ("error", error)
            dist.broadcast_object_list(message, src=0)
            raise
        message[0] = ("done", None if repeat else result)
        dist.broadcast_object_list(message, src=0)
        return result
    dist.broadcast_object_list(message, src=0)
    kind, value = message[0]
    if kind == "error":
        raise value
    return work() if repeat else value


def wrap(net: torch.nn.Module, world: World, device: str) -> torch.nn.Module:
    """``net`` in DistributedDataParallel when there are several processes (its trainable
    parameters only); unchanged for one. Parameters may go without a gradient in an iteration
    (an output of weight 0 under deep supervision, a head a batch does not train)."""
    if world.size == 1:
        return net
    ids = [torch.cuda.current_device()] if device.startswith("cuda") else None
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids, find_unused_parameters=True)


def unwrap(net: torch.nn.Module) -> torch.nn.Module:
    """The network inside a DistributedDataParallel wrapper (``net`` itself otherwise)."""
    return net.module if isinstance(net, torch.nn.parallel.DistributedDataParallel) else net


def launch(argv: list[str], nproc: int, threads: int) -> int:
    """Run ``flareseg ARGV`` in ``nproc`` processes of ``threads`` CPU threads each, through torchrun
    on this machine; returns its exit code (non-zero when a process failed: torchrun stops the
    others)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "flareseg", *argv]
    return subprocess.run(command, check=False, env={**os.environ, "OMP_NUM_THREADS": str(threads)}).returncode
