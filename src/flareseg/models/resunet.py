"""3D residual U-Net with an ASPP bottleneck (the FLARE22 coarse-to-fine network).

Four down-sampling and four up-sampling levels by default. Skip connections are *added*
to the up-sampled decoder features, so a net trained with ``skip=False`` has exactly the
same parameters as one with ``skip=True`` and can be switched on later (phased training).
"""

from __future__ import annotations

import torch
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    raise ValueError(f"unknown norm {kind!r} (instance or batch)")


class ResBlock(nn.Module):
    """Two 3x3x3 convolutions with a residual shortcut (1x1x1 when shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, norm: str = "instance"):
        super().__init__()
        self.conv1 = nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(norm, c_out)
        self.conv2 = nn.Conv3d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = _norm(norm, c_out)
        self.act = nn.LeakyReLU(0.01, inplace=True)
        self.shortcut = (
            nn.Identity() if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv3d(c_in, c_out, 1, stride=stride, bias=False), _norm(norm, c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.act(out + self.shortcut(x))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, dilated 3x3 (rates 2, 3) and image pooling."""

    def __init__(self, channels: int, norm: str = "instance"):
        super().__init__()
        branch = max(channels // 4, 4)
        self.branches = nn.ModuleList([
            nn.Conv3d(channels, branch, 1, bias=False),
            nn.Conv3d(channels, branch, 3, padding=2, dilation=2, bias=False),
            nn.Conv3d(channels, branch, 3, padding=3, dilation=3, bias=False),
        ])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Conv3d(channels, branch, 1))
        self.project = nn.Sequential(nn.Conv3d(4 * branch, channels, 1, bias=False), _norm(norm, channels),
                                     nn.LeakyReLU(0.01, inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(x).expand(-1, -1, *x.shape[2:])
        return x + self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class ResUNet3D(nn.Module):
    """Residual 3D U-Net.

    Args:
        in_channels: Input channels (1 for CT).
        out_channels: Classes, background included.
        base_channels: Width of the first level; doubles per level up to ``max_channels``.
        max_channels: Width cap.
        levels: Down-sampling steps (input sizes must be divisible by ``2**levels``).
        aspp: Put an ASPP module at the bottleneck.
        skip: Add encoder features to the decoder (switchable at any time).
        norm: ``"instance"`` or ``"batch"``.

    Input ``[B, in_channels, D, H, W]``; output logits ``[B, out_channels, D, H, W]``.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 14, base_channels: int = 8,
                 max_channels: int = 128, levels: int = 4, aspp: bool = True, skip: bool = True,
                 norm: str = "instance"):
        super().__init__()
        widths = [min(base_channels * 2 ** i, max_channels) for i in range(levels + 1)]
        self.skip = skip
        self.stem = ResBlock(in_channels, widths[0], norm=norm)
        self.down = nn.ModuleList(ResBlock(widths[i], widths[i + 1], stride=2, norm=norm) for i in range(levels))
        self.bottleneck = ASPP(widths[-1], norm) if aspp else nn.Identity()
        self.up = nn.ModuleList(
            nn.ConvTranspose3d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(levels)))
        self.decode = nn.ModuleList(ResBlock(widths[i], widths[i], norm=norm) for i in reversed(range(levels)))
        self.head = nn.Conv3d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.stem(x)]
        for block in self.down:
            features.append(block(features[-1]))
        x = self.bottleneck(features.pop())
        for up, decode in zip(self.up, self.decode):
            x = up(x)
            skip = features.pop()
            x = decode(x + skip if self.skip else x)
        return self.head(x)
