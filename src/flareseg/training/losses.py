"""Dice + cross-entropy with the marginal treatment of partial labels.

For a case where only some classes were annotated, the probabilities of the classes that
were *not* annotated are merged into background before the loss: predicting an
unannotated organ where the label says "background" is then not punished (marginal loss,
Shi et al. 2021; used by FLARE partial-label methods). With every class annotated the
loss is the usual Dice + CE.

A *merged* label (one contour of stomach and duodenum, "one of these classes") is a target
index past the channels, ``C + j``, that stands for the set ``sets[b, j]`` of channels: its
probability is the sum of theirs (CE on log sum p), and Dice scores that sum against the
merged mask in place of the members' own Dice, which the merged voxels cannot tell apart (a
set that also stands for background, in a stage holding only some members, has CE only).
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


def set_log_probs(log_p: torch.Tensor, sets: torch.Tensor) -> torch.Tensor:
    """Log-probability of each channel set: log of the sum of its channels' probabilities.

    Args:
        log_p: ``[B, C, *spatial]`` log-probabilities.
        sets: ``[B, K, C]`` bool, channel set ``k`` of each case (an all-False row is unused).

    Returns:
        ``[B, K, *spatial]``; -inf for unused rows.
    """
    view = sets.shape + (1,) * (log_p.dim() - 2)
    expanded = log_p.unsqueeze(1).masked_fill(~sets.view(view), float("-inf"))
    return torch.logsumexp(expanded, dim=2)


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, annotated: torch.Tensor,
                 dice_weight: float = 1.0, ce_weight: float = 1.0, smooth: float = 1e-5,
                 sets: torch.Tensor | None = None) -> torch.Tensor:
    """Marginal Dice + CE.

    Args:
        logits: ``[B, C, *spatial]`` network output.
        target: ``[B, *spatial]`` int64 channel indices; unannotated classes must appear as 0;
            ``C + j`` is merged label ``j`` (see ``sets``).
        annotated: ``[B, C]`` bool, which channels were annotated per case.
        dice_weight, ce_weight: Weights of the two terms.
        smooth: Added to the Dice numerator and denominator.
        sets: ``[B, K, C]`` bool, the channels each merged label stands for, or None.
    """
    log_merged = marginal_log_probs(logits, annotated)
    weight = annotated.to(log_merged.dtype).clone()
    weight[:, 0] = 0  # foreground classes only
    if sets is not None and sets.shape[1]:
        log_merged = torch.cat([log_merged, set_log_probs(log_merged, sets)], dim=1)
        used = sets.any(dim=2)
        members = (sets & used.unsqueeze(2)).any(dim=1)
        members[:, 0] = False
        # A set holding background ("a member, or a class of another stage") has no Dice: its
        # summed probability over the patch would reward calling true background some organ.
        scored = used & ~sets[:, :, 0]
        weight = torch.cat([weight.masked_fill(members, 0), scored.to(weight.dtype)], dim=1)
    ce = F.nll_loss(log_merged, target)
    probs = log_merged.exp()
    onehot = F.one_hot(target, log_merged.shape[1]).movedim(-1, 1).to(probs.dtype)
    dims = tuple(range(2, logits.dim()))
    dice = (2 * (probs * onehot).sum(dims) + smooth) / (probs.sum(dims) + onehot.sum(dims) + smooth)
    dice_loss = 1 - (dice * weight).sum() / weight.sum().clamp_min(1)
    return dice_weight * dice_loss + ce_weight * ce
