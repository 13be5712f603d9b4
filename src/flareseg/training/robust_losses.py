"""Per-voxel classification losses that are robust to wrong labels, for pseudo-labels.

Each function takes the log-probability the network gives a voxel's label, ``log p_y`` (in
flareseg the *marginal* one: the unannotated classes merged into background, a merged label's
members summed; see :mod:`flareseg.training.losses`), and returns the loss of every voxel. They
are bounded where cross-entropy is not (``-log p_y`` grows without limit as ``p_y -> 0``), so a
confidently wrong pseudo-label pulls on the network with a bounded force.

- :func:`generalized_ce`: generalised cross-entropy, Zhang & Sabuncu, "Generalized Cross Entropy
  Loss for Training Deep Neural Networks with Noisy Labels", NeurIPS 2018 (their ``L_q``):
  ``(1 - p_y^q) / q``, ``q`` in (0, 1]; ``q -> 0`` gives CE, ``q = 1`` gives ``1 - p_y``, the
  paper's MAE (half of ``sum_k |y_k - p_k|`` for the one-hot label ``y``).
- :func:`symmetric_ce`: symmetric cross-entropy, Wang et al., "Symmetric Cross Entropy for Robust
  Learning with Noisy Labels", ICCV 2019: ``alpha * CE + beta * RCE``, where the reverse CE
  ``-sum_k p_k log y_k`` of the one-hot label ``y`` takes ``log 0 = A`` (the paper: ``A = -4``),
  so ``RCE = -A (1 - p_y)``.
- :func:`beta_ce`: the beta-cross-entropy of the density-power (beta) divergence, Futami, Sato &
  Sugiyama, "Variational Inference based on Robust Divergences", AISTATS 2018, who use it for
  robust classification: ``-(beta+1)/beta p_y^beta + sum_k p_k^(beta+1)``. flareseg adds the
  constant ``1/beta``, which changes no gradient: the result is ``(beta+1)`` times the density
  power divergence of Basu, Harris, Hjort & Jones ("Robust and efficient estimation by minimising
  a density power divergence", Biometrika 1998) from the one-hot label to the prediction,
  ``D_beta(y || p) = sum_k [y_k^(beta+1) / (beta (beta+1)) - y_k p_k^beta / beta
  + p_k^(beta+1) / (beta+1)]``; it is 0 for a certain, right prediction and tends to CE as
  ``beta -> 0`` (``p^beta = 1 + beta log p + O(beta^2)``).

:data:`PARAMETER_RANGES` lists the admissible values of their parameters, which
:func:`flareseg.training.losses.build_loss` checks when a recipe's loss is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch


def generalized_ce(log_p: torch.Tensor, q: float) -> torch.Tensor:
    """Generalised cross-entropy ``(1 - p_y^q) / q`` per voxel.

    Args:
        log_p: ``log p_y``, any shape (float; ``-inf`` gives ``1 / q``).
        q: In (0, 1].

    Returns:
        The loss per voxel, the shape of ``log_p``, in ``[0, 1 / q]``.
    """
    return (1 - torch.exp(q * log_p)) / q


def reverse_ce(log_p: torch.Tensor, log_zero: float) -> torch.Tensor:
    """Reverse cross-entropy of a one-hot label with ``log 0`` clipped to ``log_zero`` (``A < 0``):
    ``-A (1 - p_y)`` per voxel, the shape of ``log_p``."""
    return -log_zero * (1 - torch.exp(log_p))


def symmetric_ce(log_p: torch.Tensor, ce_weight: float, rce_weight: float, log_zero: float) -> torch.Tensor:
    """Symmetric cross-entropy ``alpha * CE + beta * RCE`` per voxel (``alpha`` = ``ce_weight``,
    ``beta`` = ``rce_weight``, ``A`` = ``log_zero``). A zero ``ce_weight`` leaves the CE term out,
    so that a voxel of probability 0 costs ``-A beta``, not NaN."""
    loss = rce_weight * reverse_ce(log_p, log_zero)
    return loss - ce_weight * log_p if ce_weight else loss


def beta_ce(log_p: torch.Tensor, power_sum: torch.Tensor, beta: float) -> torch.Tensor:
    """Beta-cross-entropy plus ``1 / beta``: ``(1 - (beta+1) p_y^beta) / beta + sum_k p_k^(beta+1)``.

    Args:
        log_p: ``log p_y``, any shape.
        power_sum: ``sum_k p_k^(beta+1)`` over the classes the label is one of (the shape of
            ``log_p``).
        beta: > 0.

    Returns:
        The loss per voxel, in ``[0, (1 + beta) / beta]`` for a distribution ``p``.
    """
    return (1 - (beta + 1) * torch.exp(beta * log_p)) / beta + power_sum


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


#: Keyword argument -> (what it must be, test) for the robust losses' parameters.
PARAMETER_RANGES: dict[str, tuple[str, Callable[[object], bool]]] = {
    "q": ("a number in (0, 1]", lambda v: _number(v) and 0 < v <= 1),
    "beta": ("a number > 0", lambda v: _number(v) and v > 0),
    "rce_weight": ("a number >= 0", lambda v: _number(v) and v >= 0),
    "ce_weight": ("a number >= 0", lambda v: _number(v) and v >= 0),
    "dice_weight": ("a number >= 0", lambda v: _number(v) and v >= 0),
    "log_zero": ("a number < 0", lambda v: _number(v) and v < 0),
}


def out_of_range(kwargs: Mapping) -> list[str]:
    """``"q must be a number in (0, 1], got 2"`` for each keyword argument in
    :data:`PARAMETER_RANGES` whose value is not admissible."""
    return [f"{key} must be {PARAMETER_RANGES[key][0]}, got {value!r}" for key, value in kwargs.items()
            if key in PARAMETER_RANGES and not PARAMETER_RANGES[key][1](value)]
