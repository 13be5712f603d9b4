"""Dice + cross-entropy with the marginal treatment of partial labels.

For a case where only some classes were annotated, the probabilities of the classes that
were *not* annotated are merged into background before the loss: predicting an
unannotated organ where the label says "background" is then not punished (marginal loss,
Shi et al. 2021; used by FLARE partial-label methods). With every class annotated the
loss is the usual Dice + CE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def marginal_log_probs(logits: torch.Tensor, annotated: torch.Tensor) -> torch.Tensor:
    """Log-probabilities with unannotated classes merged into background.

    Args:
        logits: ``[B, C, *spatial]``.
        annotated: ``[B, C]`` bool; channel 0 (background) is treated as annotated.

    Returns:
        ``[B, C, *spatial]``: channel 0 holds log(p_bg + sum of unannotated p), unannotated
        channels hold -inf (probability 0), annotated channels their own log-probability.
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    view = annotated.shape + (1,) * (logits.dim() - 2)
    foreground_annotated = annotated.clone()
    foreground_annotated[:, 0] = False
    keep = foreground_annotated.view(view)
    background = torch.logsumexp(log_p.masked_fill(keep, float("-inf")), dim=1, keepdim=True)
    return torch.cat([background, log_p[:, 1:].masked_fill(~keep[:, 1:], float("-inf"))], dim=1)


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, annotated: torch.Tensor,
                 dice_weight: float = 1.0, ce_weight: float = 1.0, smooth: float = 1e-5) -> torch.Tensor:
    """Marginal Dice + CE.

    Args:
        logits: ``[B, C, *spatial]`` network output.
        target: ``[B, *spatial]`` int64 channel indices; unannotated classes must appear as 0.
        annotated: ``[B, C]`` bool, which channels were annotated per case.
        dice_weight, ce_weight: Weights of the two terms.
        smooth: Added to the Dice numerator and denominator.
    """
    log_merged = marginal_log_probs(logits, annotated)
    ce = F.nll_loss(log_merged, target)
    probs = log_merged.exp()
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1).to(probs.dtype)
    dims = tuple(range(2, logits.dim()))
    dice = (2 * (probs * onehot).sum(dims) + smooth) / (probs.sum(dims) + onehot.sum(dims) + smooth)
    weight = annotated.to(probs.dtype).clone()
    weight[:, 0] = 0  # foreground classes only
    dice_loss = 1 - (dice * weight).sum() / weight.sum().clamp_min(1)
    return dice_weight * dice_loss + ce_weight * ce
