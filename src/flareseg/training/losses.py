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

Recipes name their loss (:data:`LOSSES`: ``dice_ce``, ``dice``, the same without CE);
:func:`build_loss` turns the name and its keyword arguments into ``loss(outputs, target,
annotated, sets)``, which with deep supervision weights the outputs of a deep-supervised
network the way nnU-Net does (:func:`deep_supervision_weights`), each against the target
down-sampled by nearest neighbour (:func:`downsample_target`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from flareseg.errors import InputError


#: A target value that no loss term counts (e.g. the organ under a lesion, for an organ head).
IGNORE = -100


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
            ``C + j`` is merged label ``j`` (see ``sets``); :data:`IGNORE` voxels count in
            neither term.
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
    probs = log_merged.exp()
    valid = target != IGNORE
    ignoring = not bool(valid.all())
    onehot = F.one_hot(target.clamp_min(0), log_merged.shape[1]).movedim(-1, 1).to(probs.dtype)
    if ignoring:
        probs = probs * valid.unsqueeze(1)
        onehot = onehot * valid.unsqueeze(1)
    dims = tuple(range(2, logits.dim()))
    dice = (2 * (probs * onehot).sum(dims) + smooth) / (probs.sum(dims) + onehot.sum(dims) + smooth)
    dice_loss = 1 - (dice * weight).sum() / weight.sum().clamp_min(1)
    if ce_weight == 0 or not valid.any():  # 0 * an infinite CE (a -inf log-probability) would be NaN
        return dice_weight * dice_loss
    return dice_weight * dice_loss + ce_weight * F.nll_loss(log_merged, target, ignore_index=IGNORE)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, annotated: torch.Tensor, smooth: float = 1e-5,
              sets: torch.Tensor | None = None) -> torch.Tensor:
    """Marginal Dice alone: :func:`dice_ce_loss` with ``ce_weight=0`` (CE not computed)."""
    return dice_ce_loss(logits, target, annotated, dice_weight=1.0, ce_weight=0.0, smooth=smooth, sets=sets)


LOSSES: dict[str, Callable[..., torch.Tensor]] = {"dice_ce": dice_ce_loss, "dice": dice_loss}

_SUPPLIED = ("logits", "target", "annotated", "sets")  # passed by the built loss, not by kwargs


def deep_supervision_weights(n: int) -> list[float]:
    """nnU-Net's deep-supervision weights for ``n`` outputs, highest resolution first.

    ``1 / 2**i`` for output ``i``, the lowest-resolution output's set to 0, normalised to sum
    1 (nnU-Net ``nnUNetTrainer._build_loss``). One output gets weight 1.
    """
    if n < 1:
        raise ValueError(f"deep supervision needs at least one output, got {n}")
    if n == 1:
        return [1.0]
    weights = [1 / 2 ** i for i in range(n)]
    weights[-1] = 0.0
    total = sum(weights)
    return [w / total for w in weights]


def downsample_target(target: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Label map ``[B, *spatial]`` brought to spatial ``shape`` by nearest neighbour, by indexing.

    Along each axis output voxel ``j`` takes input voxel ``floor((j + 0.5) * n_in / n_out)``
    (clamped), PyTorch's ``nearest-exact``: for a factor 2 the second voxel of each pair
    (``target[:, 1::2, 1::2]``), for 4 the third of each four (``2::4``), the voxel just past
    each block's centre. nnU-Net down-samples its labels for deep supervision the same way,
    from the full-resolution label to each scale (batchgeneratorsv2
    ``DownsampleSegForDSTransform``: ``interpolate(..., mode="nearest-exact")``). Codes are
    copied, never interpolated, so merged labels ``C + j`` survive.
    """
    shape = tuple(int(n) for n in shape)
    if tuple(target.shape[1:]) == shape:
        return target
    if len(shape) != target.dim() - 1:
        raise ValueError(f"cannot bring a target of shape {tuple(target.shape)} to spatial shape {shape}")
    out = target
    for axis, n_out in enumerate(shape, start=1):
        n_in = target.shape[axis]
        if n_in == n_out:
            continue
        index = (2 * torch.arange(n_out, device=target.device) + 1) * n_in // (2 * n_out)  # exact integers
        out = out.index_select(axis, index.clamp_(max=n_in - 1))
    return out


def build_loss(name: str, kwargs: Mapping | None = None, deep_supervision: bool = False) -> Callable:
    """The loss named ``name`` (:data:`LOSSES`) with its keyword arguments ``kwargs``.

    Returns ``loss(outputs, target, annotated, sets=None)`` -> scalar tensor. ``outputs`` is
    one logits tensor ``[B, C, *spatial]``, or from a deep-supervised network a list of them,
    highest resolution first, or from a network with an organ and a lesion head the mapping
    ``{"organ": ..., "lesion": ...}``, whose losses add up (:func:`split_heads`). With ``deep_supervision`` a list is weighted by
    :func:`deep_supervision_weights`, each output against :func:`downsample_target` of the
    target to its shape (outputs of weight 0 are not computed); without, only the first
    output counts. A single tensor gets the named loss.

    Raises:
        InputError: Unknown ``name``, or ``kwargs`` the loss does not take.
    """
    if name not in LOSSES:
        raise InputError(f"unknown loss {name!r}; registered losses: {', '.join(sorted(LOSSES))}")
    function = LOSSES[name]
    kwargs = dict(kwargs or {})
    signature = inspect.signature(function)
    allowed = [p for p in signature.parameters if p not in _SUPPLIED]
    bad = sorted(set(map(str, kwargs)) - set(allowed))
    if bad:
        raise InputError(f"loss {name!r} does not take {', '.join(map(repr, bad))}; "
                         f"its keyword arguments: {', '.join(allowed)}")
    try:
        signature.bind_partial(**kwargs)
    except TypeError as error:
        raise InputError(f"loss {name!r}: bad keyword arguments {kwargs}: {error}") from None

    def single(logits: torch.Tensor, target: torch.Tensor, annotated: torch.Tensor,
               sets: torch.Tensor | None) -> torch.Tensor:
        return function(logits, downsample_target(target, logits.shape[2:]), annotated, sets=sets, **kwargs)

    def loss(outputs, target: torch.Tensor, annotated: torch.Tensor, sets: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(outputs, Mapping):  # an organ and a lesion head
            return sum(single(logits, *head_targets) for logits, head_targets in
                       zip((outputs["organ"], outputs["lesion"]), split_heads(target, annotated, sets,
                                                                               outputs["organ"].shape[1])))
        if isinstance(outputs, torch.Tensor):
            return single(outputs, target, annotated, sets)
        if not outputs:
            raise ValueError("the network returned no output")
        if not deep_supervision:
            return single(outputs[0], target, annotated, sets)
        weights = deep_supervision_weights(len(outputs))
        return sum(w * single(out, target, annotated, sets) for w, out in zip(weights, outputs) if w != 0)

    loss.__name__ = loss.__qualname__ = f"{name}_loss" + ("_deep_supervision" if deep_supervision else "")
    return loss


def split_heads(target: torch.Tensor, annotated: torch.Tensor, sets: torch.Tensor | None, organ_channels: int):
    """The targets of an organ head and a lesion head from a stage's target.

    The stage's channels are ``[background, organs..., lesions...]``; the organ head has the first
    ``organ_channels`` of them, the lesion head background and the rest. Under a lesion the organ
    is unknown, so there the organ head's target is :data:`IGNORE`. A merged label keeps its
    members for the organ head (and is ignored there when it holds a lesion); for the lesion head
    it is ignored when it holds a lesion, else background.

    Args:
        target: ``[B, *spatial]`` stage channels; ``C + j`` merged label ``j``.
        annotated: ``[B, C]``.
        sets: ``[B, K, C]`` or None.
        organ_channels: Channels of the organ head (background included).

    Returns:
        ``((target, annotated, sets) of the organ head, (target, annotated, None) of the lesion head)``.
    """
    channels = annotated.shape[1]
    merged = target >= channels
    lesion = (target >= organ_channels) & ~merged
    ignore = torch.full_like(target, IGNORE)
    organ_target = torch.where(lesion, ignore, torch.where(merged, target - channels + organ_channels, target))
    lesion_target = torch.where(lesion, target - organ_channels + 1, torch.zeros_like(target))
    organ_sets = None
    if sets is not None and sets.shape[1]:
        holds_lesion = sets[:, :, organ_channels:].any(dim=2)  # [B, K]
        index = (target - channels).clamp(min=0).flatten(1)
        unknown = merged & holds_lesion.gather(1, index).view_as(target)
        organ_target = torch.where(unknown, ignore, organ_target)
        lesion_target = torch.where(unknown, ignore, lesion_target)
        organ_sets = sets[:, :, :organ_channels] & ~holds_lesion.unsqueeze(2)
    lesion_annotated = torch.cat([annotated[:, :1], annotated[:, organ_channels:]], dim=1)
    return ((organ_target, annotated[:, :organ_channels], organ_sets), (lesion_target, lesion_annotated, None))
