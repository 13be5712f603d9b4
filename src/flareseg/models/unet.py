"""Plain 2D/3D U-Net built like nnU-Net v1's ``Generic_UNet`` (as ``nnUNetTrainerV2`` sets it up).

Convolutional pooling (the first conv of each lower stage has stride 2) and convolutional
up-sampling (a 2x2(x2) transposed convolution); every conv block is conv (with bias) ->
instance norm (affine) -> LeakyReLU(0.01), two per stage. The bottleneck is an ordinary
stage of width ``min(base_channels * 2**levels, max_channels)``: with convolutional
up-sampling nnU-Net v1 keeps its output at that width (``final_num_features``) and lets the
transposed conv bring it down to the skip width. Each decoder level has a 1x1 segmentation
head without bias (deep supervision). Weights start as in nnU-Net v1 (He normal with
negative slope 0.01 on conv weights, zero conv biases).

Skip features are *concatenated*; with ``skip=False`` zeros take their place, so the
parameters are the same either way and the switch can be flipped between training phases.
"""

from __future__ import annotations

import torch
from torch import nn

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_TRANSPOSED = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_NORMS = {("instance", 2): nn.InstanceNorm2d, ("instance", 3): nn.InstanceNorm3d,
          ("batch", 2): nn.BatchNorm2d, ("batch", 3): nn.BatchNorm3d}


class ConvNormAct(nn.Sequential):
    """3x3(x3) convolution with bias, normalisation (affine, eps 1e-5) and LeakyReLU(0.01)."""

    def __init__(self, c_in: int, c_out: int, spatial_dims: int, norm: str, stride: int = 1):
        norm_op = _NORMS[norm, spatial_dims]
        extra = {"affine": True} if norm == "instance" else {}
        super().__init__(_CONV[spatial_dims](c_in, c_out, 3, stride=stride, padding=1, bias=True),
                         norm_op(c_out, eps=1e-5, **extra), nn.LeakyReLU(0.01, inplace=True))


def _stage(c_in: int, c_out: int, spatial_dims: int, norm: str, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(ConvNormAct(c_in, c_out, spatial_dims, norm, stride),
                         ConvNormAct(c_out, c_out, spatial_dims, norm))


def _decoder_block(width: int, spatial_dims: int, norm: str) -> nn.Sequential:
    """Two conv blocks after up-sampling: ``2 * width`` (up-sampled + skip) channels in, ``width`` out."""
    return nn.Sequential(ConvNormAct(2 * width, width, spatial_dims, norm),
                         ConvNormAct(width, width, spatial_dims, norm))


def _upsample(c_in: int, c_out: int, spatial_dims: int) -> nn.Module:
    """2x2(x2) transposed convolution with stride 2, without bias."""
    return _TRANSPOSED[spatial_dims](c_in, c_out, 2, stride=2, bias=False)


def _check_settings(spatial_dims: int, norm: str, levels: int) -> None:
    """Raise ``ValueError`` for settings no U-Net here supports."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if norm not in ("instance", "batch"):
        raise ValueError(f"unknown norm {norm!r} (instance or batch)")
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels!r}")


def _widths(base_channels: int, max_channels: int, levels: int) -> list[int]:
    """Stage widths, full resolution first, the bottleneck last (``levels + 1`` of them)."""
    return [min(base_channels * 2 ** i, max_channels) for i in range(levels + 1)]


def _encoder(in_channels: int, widths: list[int], spatial_dims: int, norm: str) -> nn.ModuleList:
    """Encoder stages; every one but the first starts with a stride-2 conv (convolutional pooling)."""
    return nn.ModuleList(
        _stage(widths[i - 1] if i else in_channels, widths[i], spatial_dims, norm, stride=2 if i else 1)
        for i in range(len(widths)))


def _encode(encoder: nn.ModuleList, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run the encoder: the bottleneck's features and each higher stage's (skips, full resolution first)."""
    skips = []
    for stage in encoder[:-1]:
        x = stage(x)
        skips.append(x)
    return encoder[-1](x), skips


def _check_input(x: torch.Tensor, size_multiple: int) -> None:
    """Raise ``ValueError`` unless every spatial size is a multiple of ``size_multiple`` (not when tracing)."""
    if not torch.jit.is_tracing() and any(s % size_multiple for s in x.shape[2:]):
        raise ValueError(f"input spatial shape {tuple(x.shape[2:])} is not a multiple of {size_multiple}")


def _init_he(module: nn.Module) -> None:
    """nnU-Net v1's ``InitWeights_He(1e-2)``."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=1e-2)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class PlainUNet(nn.Module):
    """nnU-Net v1 style U-Net (``Generic_UNet`` with convolutional pooling and up-sampling).

    Args:
        in_channels: Input channels (1 for CT).
        out_channels: Classes, background included.
        spatial_dims: 2 (slices ``[B, C, H, W]``) or 3 (volumes ``[B, C, D, H, W]``).
        base_channels: Width of the first stage; doubles per stage up to ``max_channels``.
        max_channels: Width cap (nnU-Net v1: 480 in 2D, 320 in 3D).
        levels: Down-sampling steps; ``levels + 1`` encoder stages, the last one the bottleneck.
        deep_supervision: In training mode return one logits tensor per decoder level.
        norm: ``"instance"`` (nnU-Net) or ``"batch"``.
        skip: Concatenate encoder features in the decoder (zeros otherwise; switchable at any time).

    ``forward`` returns full-resolution logits ``[B, out_channels, *spatial]``, or in training
    mode with ``deep_supervision`` a list of ``levels`` logits tensors, highest resolution
    first (full resolution, 1/2, ..., 1/2**(levels-1)). Input sizes must be multiples of
    :attr:`size_multiple` = ``2**levels``.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 14, spatial_dims: int = 2,
                 base_channels: int = 32, max_channels: int = 480, levels: int = 7,
                 deep_supervision: bool = True, norm: str = "instance", skip: bool = True):
        super().__init__()
        _check_settings(spatial_dims, norm, levels)
        widths = _widths(base_channels, max_channels, levels)
        self.levels = levels
        self.size_multiple = 2 ** levels
        self.deep_supervision = deep_supervision
        self.skip = skip
        self.encoder = _encoder(in_channels, widths, spatial_dims, norm)
        # Decoder modules run from the coarsest level (just above the bottleneck) to full resolution.
        self.up = nn.ModuleList(_upsample(widths[i + 1], widths[i], spatial_dims) for i in reversed(range(levels)))
        self.decoder = nn.ModuleList(_decoder_block(widths[i], spatial_dims, norm) for i in reversed(range(levels)))
        self.heads = nn.ModuleList(
            _CONV[spatial_dims](widths[i], out_channels, 1, bias=False) for i in reversed(range(levels)))
        self.apply(_init_he)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        _check_input(x, self.size_multiple)
        x, skips = _encode(self.encoder, x)
        supervised = self.training and self.deep_supervision
        outputs = []
        for level, (up, decode, head) in enumerate(zip(self.up, self.decoder, self.heads)):
            x = up(x)
            features = skips.pop()
            x = decode(torch.cat([x, features if self.skip else torch.zeros_like(x)], dim=1))
            if supervised or level == self.levels - 1:
                outputs.append(head(x))
        return outputs[::-1] if supervised else outputs[-1]
