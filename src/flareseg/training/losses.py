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

Recipes name their loss (:data:`LOSSES`: ``dice_ce``, ``dice``, the same without CE, and the
losses robust to wrong labels, for pseudo-labels: ``gce``, ``sce``, ``beta_ce``, each optionally
plus the marginal Dice, ``dice_weight``; formulas in :mod:`flareseg.training.robust_losses`);
:func:`build_loss` turns the name and its keyword arguments into ``loss(outputs, target,
annotated, sets)``, which with deep supervision weights the outputs of a deep-supervised
network the way nnU-Net does (:func:`deep_supervision_weights`), each against the target
down-sampled by nearest neighbour (:func:`downsample_target`). :func:`build_recipe_loss` builds
a recipe's loss, which may train the labels a teacher filled in with a loss and weight of their
own (:func:`pseudo_label_loss`). Every loss leaves :data:`IGNORE` voxels out.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from flareseg.errors import InputError
from flareseg.training import robust_losses


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


def _merged_log_probs(logits: torch.Tensor, annotated: torch.Tensor,
                      sets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The marginal log-probabilities of the channels and of the merged labels, and their Dice weights.

    Returns:
        ``[B, C + K, *spatial]`` (:func:`marginal_log_probs`, then :func:`set_log_probs` of the
        ``K`` channel sets), and ``[B, C + K]``: 1 for a channel or set that Dice scores (an
        annotated foreground channel that is no member of a used set; a used set without
        background), else 0.
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
    return log_merged, weight


def _marginal_dice(log_merged: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                   smooth: float) -> torch.Tensor:
    """1 - the weighted mean soft Dice of the channels and sets (:func:`_merged_log_probs`) over
    the patch of each case, :data:`IGNORE` voxels (``~valid``) left out."""
    probs = log_merged.exp()
    onehot = F.one_hot(target.clamp_min(0), log_merged.shape[1]).movedim(-1, 1).to(probs.dtype)
    if not bool(valid.all()):
        probs = probs * valid.unsqueeze(1)
        onehot = onehot * valid.unsqueeze(1)
    dims = tuple(range(2, log_merged.dim()))
    dice = (2 * (probs * onehot).sum(dims) + smooth) / (probs.sum(dims) + onehot.sum(dims) + smooth)
    return 1 - (dice * weight).sum() / weight.sum().clamp_min(1)


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
    log_merged, weight = _merged_log_probs(logits, annotated, sets)
    valid = target != IGNORE
    dice_loss = _marginal_dice(log_merged, weight, target, valid, smooth)
    if ce_weight == 0 or not valid.any():  # 0 * an infinite CE (a -inf log-probability) would be NaN
        return dice_weight * dice_loss
    return dice_weight * dice_loss + ce_weight * F.nll_loss(log_merged, target, ignore_index=IGNORE)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, annotated: torch.Tensor, smooth: float = 1e-5,
              sets: torch.Tensor | None = None) -> torch.Tensor:
    """Marginal Dice alone: :func:`dice_ce_loss` with ``ce_weight=0`` (CE not computed)."""
    return dice_ce_loss(logits, target, annotated, dice_weight=1.0, ce_weight=0.0, smooth=smooth, sets=sets)


def _robust_loss(logits: torch.Tensor, target: torch.Tensor, annotated: torch.Tensor, sets: torch.Tensor | None,
                 dice_weight: float, smooth: float, per_voxel) -> torch.Tensor:
    """``dice_weight`` x marginal Dice + the mean over the non-:data:`IGNORE` voxels of
    ``per_voxel(log_merged, log_label)``, ``log_label`` ``[B, *spatial]`` being the marginal
    log-probability of each voxel's label (its set's for a merged label; 0 where ignored)."""
    log_merged, weight = _merged_log_probs(logits, annotated, sets)
    valid = target != IGNORE
    loss = dice_weight * _marginal_dice(log_merged, weight, target, valid, smooth) if dice_weight else None
    if valid.any():
        log_label = log_merged.gather(1, target.clamp_min(0).unsqueeze(1)).squeeze(1).masked_fill(~valid, 0.0)
        mean = per_voxel(log_merged, log_label).masked_fill(~valid, 0.0).sum() / valid.sum()
        loss = mean if loss is None else loss + mean
    return logits.sum() * 0.0 if loss is None else loss  # nothing to learn: a zero that still backpropagates


def gce_loss(logits: torch.Tensor, target: torch.Tensor, annotated: torch.Tensor, q: float = 0.7,
             dice_weight: float = 0.0, smooth: float = 1e-5, sets: torch.Tensor | None = None) -> torch.Tensor:
    """Marginal generalised cross-entropy (:func:`flareseg.training.robust_losses.generalized_ce`,
    ``q`` 0.7 as Zhang & Sabuncu), plus ``dice_weight`` x the marginal Dice of :func:`dice_ce_loss`.
    Arguments as :func:`dice_ce_loss`."""
    return _robust_loss(logits, target, annotated, sets, dice_weight, smooth,
                        lambda log_merged, log_p: robust_losses.generalized_ce(log_p, q))


def sce_loss(logits: torch.Tensor, target: torch.Tensor, annotated: torch.Tensor, ce_weight: float = 0.1,
             rce_weight: float = 1.0, log_zero: float = -4.0, dice_weight: float = 0.0, smooth: float = 1e-5,
             sets: torch.Tensor | None = None) -> torch.Tensor:
    """Marginal symmetric cross-entropy (:func:`flareseg.training.robust_losses.symmetric_ce`;
    ``alpha`` = ``ce_weight`` 0.1, ``beta`` = ``rce_weight`` 1, ``A`` = ``log_zero`` -4, Wang et
    al.'s CIFAR-10 setting), plus ``dice_weight`` x the marginal Dice. Arguments as :func:`dice_ce_loss`."""
    return _robust_loss(logits, target, annotated, sets, dice_weight, smooth,
                        lambda log_merged, log_p: robust_losses.symmetric_ce(log_p, ce_weight, rce_weight, log_zero))


def beta_ce_loss(logits: torch.Tensor, target: torch.Tensor, annotated: torch.Tensor, beta: float = 0.5,
                 dice_weight: float = 0.0, smooth: float = 1e-5, sets: torch.Tensor | None = None) -> torch.Tensor:
    """Marginal beta-cross-entropy + 1/beta (:func:`flareseg.training.robust_losses.beta_ce`; ``beta``
    0.5 is flareseg's default), plus ``dice_weight`` x the marginal Dice. Arguments as :func:`dice_ce_loss`.

    The classes of ``sum_k p_k^(beta+1)`` are those of the marginal distribution (background
    with the unannotated classes merged into it, each annotated channel); for a voxel of a merged
    label its members count as one class, the set.
    """
    channels = annotated.shape[1]

    def per_voxel(log_merged: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        powers = torch.exp((beta + 1) * log_merged)  # [B, C + K, *spatial]
        power_sum = powers[:, :channels].sum(1)
        if log_merged.shape[1] > channels:  # a merged label: its members' terms become the set's
            members = torch.einsum("bkc,bc...->bk...", sets[:, :, :channels].to(powers.dtype), powers[:, :channels])
            inside = torch.cat([powers[:, :channels], members], dim=1)
            index = target.clamp_min(0).unsqueeze(1)
            power_sum = power_sum - inside.gather(1, index).squeeze(1) + powers.gather(1, index).squeeze(1)
        return robust_losses.beta_ce(log_p, power_sum, beta)

    return _robust_loss(logits, target, annotated, sets, dice_weight, smooth, per_voxel)


LOSSES: dict[str, Callable[..., torch.Tensor]] = {"dice_ce": dice_ce_loss, "dice": dice_loss, "gce": gce_loss,
                                                  "sce": sce_loss, "beta_ce": beta_ce_loss}

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
        InputError: Unknown ``name``, ``kwargs`` the loss does not take, or a robust loss's
            parameter out of its range (:data:`flareseg.training.robust_losses.PARAMETER_RANGES`).
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
    wrong = robust_losses.out_of_range(kwargs)
    if wrong:
        raise InputError(f"loss {name!r}: {'; '.join(wrong)}")

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
    it is ignored when it holds a lesion, else background. A voxel the stage's target ignores is
    ignored by both heads.

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
    lesion_target = torch.where(target == IGNORE, ignore, lesion_target)  # ignored in the stage: in both heads
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


def split_pseudo_labels(target: torch.Tensor, annotated: torch.Tensor, own_annotated: torch.Tensor,
                        sets: torch.Tensor | None):
    """The part of a pseudo-labelled target that the cases annotate themselves, and the part a teacher filled.

    The own part is what the case says without the teacher: the voxels of the teacher's classes
    are background (the marginal loss, with those classes unannotated, then does not punish
    them). The teacher's part holds the teacher's classes and background; the case's own classes
    are unannotated there (merged into background) and their voxels, merged labels included,
    are :data:`IGNORE`, as is everything the target already ignores.

    Args:
        target: ``[B, *spatial]`` stage channels; ``C + j`` merged label ``j``.
        annotated: ``[B, C]``: the case's own classes and the teacher's.
        own_annotated: ``[B, C]``: the case's own classes (channel 0 counts as annotated).
        sets: ``[B, K, C]`` or None.

    Returns:
        ``((target, annotated, sets) of the own part, (target, annotated, None) of the teacher's
        part)``. A merged label's member that the case does not annotate itself becomes
        background in the own part's set, as in :func:`flareseg.training.samples.merged_targets`.
    """
    channels = annotated.shape[1]
    own = own_annotated & annotated
    own[:, 0] = True
    teacher = annotated & ~own
    own_foreground = own.clone()
    own_foreground[:, 0] = False
    index = target.clamp(0, channels - 1).flatten(1)
    in_range = (target >= 0) & (target < channels)
    teacher_voxel = teacher.gather(1, index).view_as(target) & in_range
    own_voxel = (own_foreground.gather(1, index).view_as(target) & in_range) | (target >= channels)
    own_target = torch.where(teacher_voxel, torch.zeros_like(target), target)
    teacher_target = torch.where(own_voxel, torch.full_like(target, IGNORE), target)
    own_sets = None
    if sets is not None:
        own_sets = sets & own.unsqueeze(1)
        own_sets[:, :, 0] |= (sets & ~own.unsqueeze(1)).any(dim=2)
    teacher_annotated = teacher.clone()
    teacher_annotated[:, 0] = True
    return (own_target, own, own_sets), (teacher_target, teacher_annotated, None)


def _rows(outputs, rows: torch.Tensor):
    """The batch rows ``rows`` (bool ``[B]``) of a network's outputs: a tensor, a list or a mapping of them."""
    if isinstance(outputs, Mapping):
        return {key: value[rows] for key, value in outputs.items()}
    if isinstance(outputs, torch.Tensor):
        return outputs[rows]
    return [output[rows] for output in outputs]


def _zero(outputs) -> torch.Tensor:
    """0, attached to the network's graph (a batch with nothing to learn must still backpropagate)."""
    while not isinstance(outputs, torch.Tensor):
        outputs = next(iter(outputs.values())) if isinstance(outputs, Mapping) else outputs[0]
    return outputs.sum() * 0.0


def pseudo_label_loss(own_loss: Callable, teacher_loss: Callable, weight: float) -> Callable:
    """A loss that trains what the cases annotate themselves with ``own_loss`` and what a teacher
    filled in with ``teacher_loss`` x ``weight`` (:func:`split_pseudo_labels`).

    Both are losses of :func:`build_loss`. Returns ``loss(outputs, target, annotated, sets=None,
    own_annotated=None)``: with ``own_annotated`` None, or equal to ``annotated`` (no case of the
    batch holds pseudo-labels), ``own_loss`` of the whole batch; else ``n_own / B`` x ``own_loss``
    of the ``n_own`` cases that annotate a class of the stage themselves, plus ``weight`` x
    ``n_teacher / B`` x ``teacher_loss`` of the ``n_teacher`` cases with a class from the teacher:
    each case of the batch weighs the same, as in a loss over the whole batch. An unlabelled case
    has only the teacher's part, a partially labelled one both.
    """
    def loss(outputs, target: torch.Tensor, annotated: torch.Tensor, sets: torch.Tensor | None = None,
             own_annotated: torch.Tensor | None = None) -> torch.Tensor:
        if own_annotated is None or bool((own_annotated == annotated).all()):
            return own_loss(outputs, target, annotated, sets)
        own, teacher = split_pseudo_labels(target, annotated, own_annotated, sets)
        batch = target.shape[0]
        terms = []
        rows = own[1][:, 1:].any(dim=1)
        if rows.any():
            terms.append(int(rows.sum()) / batch * own_loss(
                _rows(outputs, rows), own[0][rows], own[1][rows], None if own[2] is None else own[2][rows]))
        rows = teacher[1][:, 1:].any(dim=1)
        if weight and rows.any():
            terms.append(weight * int(rows.sum()) / batch * teacher_loss(
                _rows(outputs, rows), teacher[0][rows], teacher[1][rows], None))
        return sum(terms[1:], terms[0]) if terms else _zero(outputs)

    loss.__name__ = loss.__qualname__ = "pseudo_label_loss"
    return loss


def build_recipe_loss(config) -> Callable:
    """The loss of a recipe's ``train.loss`` (:class:`flareseg.recipes.LossConfig`):
    ``loss(outputs, target, annotated, sets=None, own_annotated=None)``.

    Its ``name``, ``kwargs`` and ``deep_supervision`` give the loss (:func:`build_loss`). With
    ``pseudo`` (name, kwargs, weight) the labels a teacher filled in train with that loss times
    its weight (:func:`pseudo_label_loss`, with the same deep supervision); without, every label
    trains with the recipe's loss and ``own_annotated`` is not looked at.

    Raises:
        InputError: As :func:`build_loss`, for either loss.
    """
    own_loss = build_loss(config.name, config.kwargs, config.deep_supervision)
    pseudo = getattr(config, "pseudo", None)
    if pseudo is not None:
        return pseudo_label_loss(own_loss, build_loss(pseudo.name, pseudo.kwargs, config.deep_supervision),
                                 pseudo.weight)

    def loss(outputs, target: torch.Tensor, annotated: torch.Tensor, sets: torch.Tensor | None = None,
             own_annotated: torch.Tensor | None = None) -> torch.Tensor:
        return own_loss(outputs, target, annotated, sets)

    loss.__name__ = loss.__qualname__ = own_loss.__name__
    return loss
