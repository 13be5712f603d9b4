"""Dual-decoder U-Net for partially labelled organ + lesion data (FLARE23 style).

One encoder and one decoder built like :class:`flareseg.models.unet.PlainUNet` (nnU-Net v1
blocks: conv -> instance norm -> LeakyReLU, strided-conv pooling, transposed-conv up-sampling,
concatenated skips, He initialisation), except that the decoder's last ``split_levels``
up-sampling stages (the highest-resolution ones) exist twice: an *organ* branch and a *lesion*
branch, each ending in its own 1x1 head at full resolution. The organ branch can learn from
organ labels and the lesion branch from lesion labels, and either can be trained alone by
freezing the rest; at inference the lesion output is overlaid on the organ output.
"""

from __future__ import annotations

import torch
from torch import nn

from flareseg.models.unet import (_CONV, _check_input, _check_settings, _decoder_block, _encode, _encoder,
                                  _init_he, _upsample, _widths)

#: Margin that puts a "no lesion" score below every organ log-probability (>= -log(#organ channels)).
_LESION_MARGIN = 1e4


class UpStage(nn.Module):
    """One decoder level: transposed-conv up-sampling (``up``), then skip concatenation and two
    conv blocks (``conv``); with ``skip=False`` zeros take the skip's place."""

    def __init__(self, c_in: int, c_out: int, spatial_dims: int, norm: str):
        super().__init__()
        self.up = _upsample(c_in, c_out, spatial_dims)
        self.conv = _decoder_block(c_out, spatial_dims, norm)

    def forward(self, x: torch.Tensor, features: torch.Tensor, skip: bool) -> torch.Tensor:
        x = self.up(x)
        return self.conv(torch.cat([x, features if skip else torch.zeros_like(x)], dim=1))


class Branch(nn.Module):
    """The duplicated high-resolution decoder levels (``stages``, coarsest first) and a 1x1
    head without bias (``head``) at full resolution."""

    def __init__(self, widths: list[int], split_levels: int, classes: int, spatial_dims: int, norm: str):
        super().__init__()
        self.stages = nn.ModuleList(
            UpStage(widths[i + 1], widths[i], spatial_dims, norm) for i in reversed(range(split_levels)))
        self.head = _CONV[spatial_dims](widths[0], classes, 1, bias=False)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor], skip: bool) -> torch.Tensor:
        # skips: encoder features of the branch's levels, coarsest first.
        for stage, features in zip(self.stages, skips):
            x = stage(x, features, skip)
        return self.head(x)


class DualDecoderUNet(nn.Module):
    """U-Net with a shared encoder and upper decoder and separate organ and lesion branches
    for the last ``split_levels`` (highest-resolution) decoder levels, as in the FLARE23
    dual-decoder networks for partial labels. No deep supervision: each branch has one head,
    at full resolution.

    Args:
        in_channels: Input channels (1 for CT).
        out_channels: Classes of the stage, background included: ``[background, organs...,
            lesions...]``, the last ``lesion_channels`` of them lesions.
        lesion_channels: Lesion classes (at the end of the class list).
        split_levels: Decoder levels duplicated per branch, ``1..levels`` (``levels``: only the
            encoder is shared).
        spatial_dims: 2 (slices ``[B, C, H, W]``) or 3 (volumes ``[B, C, D, H, W]``).
        base_channels: Width of the first stage; doubles per stage up to ``max_channels``.
        max_channels: Width cap.
        levels: Down-sampling steps; ``levels + 1`` encoder stages, the last one the bottleneck.
        norm: ``"instance"`` or ``"batch"``.
        skip: Concatenate encoder features in the decoder and the branches (zeros otherwise; the
            parameters are the same either way and the switch can be flipped at any time).

    Outputs (input sizes must be multiples of :attr:`size_multiple` = ``2**levels``):

    * training mode: ``{"organ": organ_logits, "lesion": lesion_logits}``, full resolution, with
      ``out_channels - lesion_channels`` organ channels (background + organs) and
      ``lesion_channels + 1`` lesion channels (lesion background + lesions).
    * eval mode (and ONNX export): one tensor ``[B, out_channels, *spatial]`` whose argmax is
      the organ argmax with the lesion overlaid where the lesion head says lesion. The organ
      channels are ``log_softmax(organ_logits)`` (all <= 0, the best >= -log(#organ
      channels)); lesion channel ``k`` is ``s_k = l_k - l_0`` (lesion logit minus
      lesion-background logit) where the lesion head's argmax is a lesion (``max_k s_k > 0``),
      which beats every organ channel, and ``s_k - 1e4`` elsewhere, which loses to the best
      organ channel. With one lesion class that is ``d = l_1 - l_0`` if ``d > 0`` else
      ``d - 1e4``; with several, the lesion with the largest logit wins where any beats the
      lesion background. These are scores for an argmax, not calibrated logits: their softmax
      is not a probability of either head.

    Parameter names (for ``fnmatch`` freezing patterns):

    * ``encoder.*``: encoder stages, ``encoder.<i>.*`` with ``i = 0`` full resolution and
      ``i = levels`` the bottleneck (the same names as in ``PlainUNet``).
    * ``decoder.*``: the shared decoder levels, ``decoder.<j>.up.*`` (transposed conv) and
      ``decoder.<j>.conv.*``, ``j = 0`` the coarsest (``levels - split_levels`` of them).
    * ``organ_branch.*`` / ``lesion_branch.*``: each branch's levels
      ``<branch>.stages.<j>.up.*`` / ``<branch>.stages.<j>.conv.*`` (``j = 0`` the coarsest of
      the ``split_levels``) and its head ``<branch>.head.weight``.

    These four patterns partition the parameters. Training only ``lesion_branch.*`` leaves the
    organ output unchanged (with ``norm="batch"`` keep the frozen parts in eval mode as well, or
    their running statistics still move).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 15, lesion_channels: int = 1,
                 split_levels: int = 2, spatial_dims: int = 2, base_channels: int = 32,
                 max_channels: int = 480, levels: int = 5, norm: str = "instance", skip: bool = True):
        super().__init__()
        _check_settings(spatial_dims, norm, levels)
        if not 1 <= split_levels <= levels:
            raise ValueError(f"split_levels must be 1..levels ({levels}), got {split_levels!r}")
        if lesion_channels < 1:
            raise ValueError(f"lesion_channels must be at least 1, got {lesion_channels!r}")
        if out_channels - lesion_channels < 2:
            raise ValueError(f"out_channels ({out_channels}) must leave background and at least one organ "
                             f"besides {lesion_channels} lesion channel(s)")
        widths = _widths(base_channels, max_channels, levels)
        self.levels = levels
        self.split_levels = split_levels
        self.size_multiple = 2 ** levels
        self.out_channels = out_channels
        self.lesion_channels = lesion_channels
        self.organ_channels = out_channels - lesion_channels
        self.skip = skip
        self.encoder = _encoder(in_channels, widths, spatial_dims, norm)
        self.decoder = nn.ModuleList(
            UpStage(widths[i + 1], widths[i], spatial_dims, norm) for i in reversed(range(split_levels, levels)))
        self.organ_branch = Branch(widths, split_levels, self.organ_channels, spatial_dims, norm)
        self.lesion_branch = Branch(widths, split_levels, lesion_channels + 1, spatial_dims, norm)
        self.apply(_init_he)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        _check_input(x, self.size_multiple)
        x, skips = _encode(self.encoder, x)
        for stage in self.decoder:
            x = stage(x, skips.pop(), self.skip)
        branch_skips = skips[::-1]  # the remaining split_levels, coarsest first
        organ = self.organ_branch(x, branch_skips, self.skip)
        lesion = self.lesion_branch(x, branch_skips, self.skip)
        if self.training:
            return {"organ": organ, "lesion": lesion}
        return self.combine(organ, lesion)

    @staticmethod
    def combine(organ: torch.Tensor, lesion: torch.Tensor) -> torch.Tensor:
        """The eval-mode output from the two heads' logits (see the class docstring)."""
        margins = lesion[:, 1:] - lesion[:, :1]
        hit = margins.amax(dim=1, keepdim=True) > 0
        lesion_scores = torch.where(hit, margins, margins - _LESION_MARGIN)
        return torch.cat([torch.log_softmax(organ, dim=1), lesion_scores], dim=1)
