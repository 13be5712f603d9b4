"""Mean teacher (Tarvainen & Valpola, NeurIPS 2017, "Mean teachers are better role models").

The teacher is an exponential moving average (EMA) of the student's weights, updated after
every optimiser step (:func:`ema_update`). Each batch is seen twice: the student sees it as
training augments it, the teacher the same voxels with independent Gaussian noise on the
intensities only (:func:`noisy_view`), so the two outputs stay voxel-aligned. The student is
trained to match the teacher's softmax (:func:`consistency_loss`), weighted by
``MeanTeacherConfig.weight`` times a sigmoid ramp-up (:func:`sigmoid_rampup`). The recipe
switch is ``train.mean_teacher`` (:class:`flareseg.recipes.schema.MeanTeacherConfig`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping

import torch


def make_teacher(student: torch.nn.Module, weights: dict | None = None) -> torch.nn.Module:
    """A teacher for ``student``: a copy of it (the same network, device and modes) holding
    ``weights`` (default the student's), without gradients, whose normalisation layers never move
    their running statistics themselves (they are the EMA of the student's; in training mode they
    still normalise with the batch's statistics, as the student's)."""
    teacher = copy.deepcopy(student)
    if weights is not None:
        teacher.load_state_dict(weights)  # strict: the same network
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
        parameter.grad = None
    for module in teacher.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.0  # running = (1 - 0) x running + 0 x batch
    return teacher


def match_modes(teacher: torch.nn.Module, student: torch.nn.Module) -> None:
    """Put each module of ``teacher`` in the training/eval mode of the same module of ``student``
    (a frozen normalisation layer, kept in eval mode by training, stays so in the teacher)."""
    for mine, theirs in zip(teacher.modules(), student.modules()):
        mine.training = theirs.training


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, ema: float) -> None:
    """``teacher = ema * teacher + (1 - ema) * student``, in place, for every floating-point
    parameter and buffer (running means and variances included); integer buffers (BatchNorm's
    ``num_batches_tracked``) are copied.

    Args:
        teacher: The EMA network; its state dict must have the student's keys and shapes.
        student: The trained network.
        ema: Decay in [0, 1); 0 copies the student.
    """
    student_state = student.state_dict()
    for name, value in teacher.state_dict().items():
        source = student_state[name].detach()
        if value.is_floating_point():
            value.mul_(ema).add_(source.to(value.dtype), alpha=1 - ema)
        else:
            value.copy_(source)


def noisy_view(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """``x`` plus Gaussian noise of standard deviation ``std`` (input units), drawn from
    ``generator`` (on ``x``'s device); the voxels do not move."""
    if std == 0:
        return x
    return x + std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def full_resolution(outputs) -> list[torch.Tensor]:
    """The full-resolution logits of a network's training output: a tensor, the first of a
    deep-supervised list/tuple, or one per head of a mapping (``{"organ", "lesion"}``)."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, Mapping):
        return [full_resolution(value)[0] for value in outputs.values()]
    if not outputs:
        raise ValueError("the network returned no output")
    return [outputs[0]]


def consistency_loss(student_outputs, teacher_outputs) -> torch.Tensor:
    """Mean squared error between the student's and the teacher's softmax probabilities over
    channels, averaged over all channels and voxels of the batch (summed over the heads of a
    two-headed network). The teacher's side is detached.

    Args:
        student_outputs: Logits ``[B, C, *spatial]`` (or a deep-supervised list, or a mapping
            of heads; see :func:`full_resolution`).
        teacher_outputs: The teacher's, of the same structure.

    Returns:
        A scalar float32 tensor, >= 0; 0 for identical outputs.
    """
    total = 0.0
    for student, teacher in zip(full_resolution(student_outputs), full_resolution(teacher_outputs), strict=True):
        probability = torch.softmax(student.float(), dim=1)
        target = torch.softmax(teacher.detach().float(), dim=1)
        total = total + torch.mean((probability - target) ** 2)
    return total


def sigmoid_rampup(epochs_done: float, rampup_epochs: int) -> float:
    """The paper's ramp-up factor ``exp(-5 (1 - t)^2)``, ``t = epochs_done / rampup_epochs``
    clipped to [0, 1]: exp(-5) ~ 0.0067 at the start, 1 from ``rampup_epochs`` on (always 1
    when ``rampup_epochs`` is 0).

    Args:
        epochs_done: Epochs of the phase done so far, fractional within an epoch.
        rampup_epochs: Length of the ramp-up in epochs.
    """
    if rampup_epochs <= 0:
        return 1.0
    t = min(max(epochs_done / rampup_epochs, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)
