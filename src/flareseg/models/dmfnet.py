"""Attention DMFNet: a 3D dilated multi-fiber network with attention-gated skip connections
(the network of the FLARE22 paper "A Two-stage Segmentation Neural Network").

The paper names its parts, DMFNet and attention gates, and gives neither sizes nor settings.
The structure below follows the two sources; every size and setting not stated there is
flareseg's choice and is marked so.

**DMFNet** (Chen et al., "3D Dilated Multi-Fiber Network for Real-time Brain Tumor Segmentation
in MRI", MICCAI 2019, and the authors' BraTS-DMFNet code):

* Every convolution is pre-activated (normalisation -> ReLU -> convolution without bias).
* A *multi-fiber (MF) unit* mixes channels with two 1x1x1 convolutions, the multiplexer
  (``C_in -> C_in / 4 -> C_mid``, ``C_mid = min(C_in, C_out)``), then runs two grouped
  convolutions (``groups`` fibers, 16 in DMFNet): 3x3x3 (with the unit's stride) and 1x3x3
  (``[z, y, x]``: in-plane only, as the authors' code does), and adds a shortcut: the input, or a
  pre-activated 1x1x1 (stride 1) or 2x2x2 (stride 2) convolution where the shape changes.
* A *dilated MF (DMF) unit* replaces the first grouped 3x3x3 convolution by three parallel ones
  with dilations 1, 2 and 3 (each with its own pre-activation normalisation), summed with
  learnt weights (one scalar per branch, starting at 1): ``branch_weights``.
* The network: a 3x3x3 stride-2 convolution (``stem_channels``), encoder blocks of ``units``
  DMF units (3 in DMFNet) whose first one has stride 2, widths ``channels``, ``2 * channels``,
  ..., then a bottleneck of MF units at half that resolution (``w -> 1.5 w -> 1.5 w -> w``, ``w``
  the last encoder width, as DMFNet's ``2c -> 3c -> 3c -> 2c``). Each decoder level up-samples
  the coarser features 2x (trilinear), concatenates them with the skip features and runs one MF
  unit down to the skip's width; a 1x1x1 convolution without bias gives the class scores at half
  resolution, and a last 2x trilinear up-sampling brings them to the input size. (DMFNet
  up-samples before that convolution; both are linear, so the result is the same, with fewer
  channels to up-sample.) ``levels`` (4 in DMFNet: 16x down-sampling) counts the stem, the DMF
  blocks and the bottleneck. Weights start He-normal (fan in), as DMFNet's.

**Attention gates** (Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas",
MIDL 2018) on every skip connection: additive attention

    alpha = sigmoid(psi(relu(W_x x + W_g g)))

with ``x`` the skip (encoder) features, ``g`` the gating signal, the features of the next coarser
decoder level (the bottleneck for the deepest skip) resampled 2x (trilinear) to the skip's size,
``W_x`` a 1x1x1 convolution without bias, ``W_g`` one with bias, both to ``C_skip / 2`` channels
(the width Oktay et al.'s code uses), and ``psi`` a 1x1x1 convolution with bias to one channel:
one coefficient in [0, 1] per voxel of the skip, which multiplies every skip channel before the
concatenation. (Oktay et al. compute the coefficients on the coarse grid and resample them; here
``g`` is resampled, so that each skip voxel gets its own coefficient.)

**flareseg's choices**: instance normalisation by default (``norm``; DMFNet used batch
normalisation on GPU batches of 8, flareseg trains batch 2), one input channel (CT), the depth
and units per block as arguments (``levels``, ``units``; DMFNet has 4 and 3), the gating signal
resampled to the skip's grid (above), and the sizes the recipe ``attention_dmfnet`` sets (the
class defaults are DMFNet's). Everything exports to ONNX (grouped dilated convolutions, linear
5D resizing) and runs in onnxruntime.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from flareseg.models.unet import _check_input

_NORMS = {"instance": lambda c: nn.InstanceNorm3d(c, affine=True), "batch": nn.BatchNorm3d}


class PreActConv(nn.Sequential):
    """Normalisation -> ReLU -> 3D convolution without bias (``kernel`` ``[z, y, x]``, padding
    that keeps the size at stride 1)."""

    def __init__(self, c_in: int, c_out: int, kernel=(1, 1, 1), stride: int = 1, groups: int = 1,
                 dilation: int = 1, norm: str = "instance", padding: bool = True):
        pad = tuple((k - 1) // 2 * dilation for k in kernel) if padding else 0
        super().__init__(_NORMS[norm](c_in), nn.ReLU(inplace=True),
                         nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=pad, dilation=dilation,
                                   groups=groups, bias=False))


class MultiFiberUnit(nn.Module):
    """A (dilated) multi-fiber unit: multiplexer, grouped convolutions, shortcut.

    Args:
        c_in: Input channels.
        c_out: Output channels (a multiple of ``groups``).
        groups: Fibers of the grouped convolutions.
        stride: 1, or 2 (halves every spatial size).
        dilations: Dilations of the parallel first grouped 3x3x3 convolutions: ``(1,)`` an MF
            unit, ``(1, 2, 3)`` a DMF unit, whose branches are summed with the learnt
            ``branch_weights`` (one per branch).
        norm: ``"instance"`` or ``"batch"``.
    """

    def __init__(self, c_in: int, c_out: int, groups: int, stride: int = 1, dilations=(1,), norm: str = "instance"):
        super().__init__()
        c_mid = min(c_in, c_out)
        c_plex = max(c_in // 4, 1)
        self.multiplexer = nn.Sequential(PreActConv(c_in, c_plex, norm=norm), PreActConv(c_plex, c_mid, norm=norm))
        self.branches = nn.ModuleList(
            PreActConv(c_mid, c_out, (3, 3, 3), stride, groups, d, norm) for d in dilations)
        self.branch_weights = nn.Parameter(torch.ones(len(dilations))) if len(dilations) > 1 else None
        self.in_plane = PreActConv(c_out, c_out, (1, 3, 3), groups=groups, norm=norm)
        self.shortcut = nn.Identity() if c_in == c_out and stride == 1 else \
            PreActConv(c_in, c_out, (stride,) * 3, stride, norm=norm, padding=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = self.multiplexer(x)
        if self.branch_weights is None:
            out = self.branches[0](mixed)
        else:
            out = self.branch_weights[0] * self.branches[0](mixed)
            for weight, branch in zip(self.branch_weights[1:], self.branches[1:]):
                out = out + weight * branch(mixed)
        return self.in_plane(out) + self.shortcut(x)


class AttentionGate(nn.Module):
    """Additive attention gate: ``alpha = sigmoid(psi(relu(W_x x + W_g g)))``, ``[B, 1, *x.shape[2:]]``
    in [0, 1]; ``x`` skip features ``[B, C_skip, D, H, W]``, ``g`` the gating signal on the same grid."""

    def __init__(self, skip_channels: int, gating_channels: int):
        super().__init__()
        inner = max(skip_channels // 2, 1)
        self.skip = nn.Conv3d(skip_channels, inner, 1, bias=False)
        self.gating = nn.Conv3d(gating_channels, inner, 1)
        self.psi = nn.Conv3d(inner, 1, 1)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.psi(torch.relu(self.skip(x) + self.gating(g))))


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return functional.interpolate(x, scale_factor=2.0, mode="trilinear", align_corners=False)


def _widths(stem_channels: int, channels: int, groups: int, levels: int, units: int) -> list[int]:
    """Encoder widths: the stem's, each DMF block's, and the bottleneck's inner width (1.5 times
    the last); ``ValueError`` unless each splits into ``groups`` fibers."""
    if levels < 2:
        raise ValueError(f"levels must be at least 2 (the stem and the bottleneck), got {levels!r}")
    if units < 1 or groups < 1:
        raise ValueError(f"units and groups must be at least 1, got {units!r} and {groups!r}")
    widths = [stem_channels] + [channels * 2 ** i for i in range(levels - 2)]
    widths.append(3 * widths[-1] // 2)
    if any(w < groups or w % groups for w in widths) or 3 * widths[-2] % 2:
        raise ValueError(f"stem_channels, channels and the bottleneck's width (1.5 times the last encoder width) "
                         f"must be multiples of groups ({groups}); widths {widths}")
    return widths


def _block(c_in: int, c_out: int, c_back: int, units: int, groups: int, dilations, norm: str) -> nn.Sequential:
    """``units`` units at half the input's resolution: ``c_in -> c_out -> ... -> c_out -> c_back``,
    the first with stride 2."""
    sizes = [c_in] + [c_out] * (units - 1) + [c_back]
    return nn.Sequential(*(MultiFiberUnit(sizes[k], sizes[k + 1], groups, 2 if k == 0 else 1, dilations, norm)
                           for k in range(units)))


class AttentionDMFNet(nn.Module):
    """DMFNet with attention-gated skip connections (see the module docstring).

    Args:
        in_channels: Input channels (1 for CT).
        out_channels: Classes, background included.
        stem_channels: Width of the stride-2 stem convolution (DMFNet: 32).
        channels: Width of the first DMF block; doubles per block (DMFNet: 128).
        groups: Fibers of every grouped convolution (DMFNet: 16).
        levels: Down-sampling steps: the stem, ``levels - 2`` DMF blocks, the bottleneck (DMFNet:
            4). Input sizes must be multiples of :attr:`size_multiple` = ``2**levels``.
        units: Units per encoder block and in the bottleneck (DMFNet: 3).
        dilations: Dilations of the DMF units' parallel convolutions (DMFNet: 1, 2, 3).
        norm: ``"instance"`` (flareseg's default) or ``"batch"`` (DMFNet's).

    ``forward(x)`` maps ``[B, in_channels, D, H, W]`` to logits ``[B, out_channels, D, H, W]``;
    ``forward(x, return_attention=True)`` also returns the attention coefficients of each skip
    connection, full resolution first: ``[B, 1, D / 2**k, H / 2**k, W / 2**k]`` for ``k = 1 ..
    levels - 1``, values in [0, 1].

    Parameter names: ``stem.*``, ``encoder.<i>.<u>.*`` (``i = 0`` the first DMF block, the last
    the bottleneck; ``...branch_weights`` the learnt dilation weights), ``gates.<j>.*`` and
    ``decoder.<j>.*`` (``j = 0`` the coarsest level), ``head.weight``.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 14, stem_channels: int = 32, channels: int = 128,
                 groups: int = 16, levels: int = 4, units: int = 3, dilations: tuple[int, ...] = (1, 2, 3),
                 norm: str = "instance"):
        super().__init__()
        if norm not in _NORMS:
            raise ValueError(f"unknown norm {norm!r} (instance or batch)")
        widths = _widths(stem_channels, channels, groups, levels, units)
        dilations = tuple(int(d) for d in dilations)
        if not dilations or min(dilations) < 1:
            raise ValueError(f"dilations must be positive integers, got {list(dilations)}")
        self.levels = levels
        self.size_multiple = 2 ** levels
        self.stem = nn.Conv3d(in_channels, stem_channels, 3, stride=2, padding=1, bias=False)
        self.encoder = nn.ModuleList(  # DMF blocks, then the MF bottleneck (w -> 1.5w -> ... -> w)
            [_block(widths[i - 1], widths[i], widths[i], units, groups, dilations, norm) for i in range(1, levels - 1)]
            + [_block(widths[-2], widths[-1], widths[-2], units, groups, (1,), norm)])
        skips = widths[:-1]  # skip widths, full resolution first; the bottleneck gives back widths[-2]
        gating = [skips[-1]] + skips[:0:-1]  # per decoder level, coarsest first: the coarser level's width
        self.gates = nn.ModuleList(AttentionGate(s, g) for s, g in zip(skips[::-1], gating))
        self.decoder = nn.ModuleList(
            MultiFiberUnit(s + g, s, groups, 1, (1,), norm) for s, g in zip(skips[::-1], gating))
        self.head = nn.Conv3d(stem_channels, out_channels, 1, bias=False)
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor,
                return_attention: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        _check_input(x, self.size_multiple)
        skips = [self.stem(x)]
        for block in self.encoder:
            skips.append(block(skips[-1]))
        x = skips.pop()
        attention = []
        for gate, decode in zip(self.gates, self.decoder):
            features, g = skips.pop(), _upsample(x)
            alpha = gate(features, g)
            attention.append(alpha)
            x = decode(torch.cat([alpha * features, g], dim=1))
        logits = _upsample(self.head(x))
        return (logits, attention[::-1]) if return_attention else logits
