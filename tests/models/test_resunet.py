"""The 3D ResUNet: shapes, switchable skips, registry."""

from __future__ import annotations

import pytest
import torch

from flareseg.errors import InputError
from flareseg.models.registry import build_network


def test_output_has_one_channel_per_class_at_input_size():
    net = build_network("resunet3d", {"base_channels": 4, "max_channels": 16, "levels": 4}, out_channels=5)
    out = net(torch.zeros(2, 1, 32, 16, 48))
    assert out.shape == (2, 5, 32, 16, 48)


def test_skip_connections_switch_without_changing_parameters():
    kwargs = {"base_channels": 4, "max_channels": 8, "levels": 3}
    with_skip = build_network("resunet3d", {**kwargs, "skip": True}, 3)
    without = build_network("resunet3d", {**kwargs, "skip": False}, 3)
    without.load_state_dict(with_skip.state_dict())  # same parameters, strict load
    x = torch.rand(1, 1, 16, 16, 16)
    with_skip.eval(), without.eval()
    assert not torch.allclose(with_skip(x), without(x))
    with_skip.skip = False
    assert torch.allclose(with_skip(x), without(x))


def test_aspp_and_levels_are_configurable():
    small = build_network("resunet3d", {"base_channels": 4, "levels": 2, "aspp": False}, 2)
    big = build_network("resunet3d", {"base_channels": 4, "levels": 2, "aspp": True}, 2)
    assert sum(p.numel() for p in big.parameters()) > sum(p.numel() for p in small.parameters())
    assert small(torch.zeros(1, 1, 8, 8, 8)).shape == (1, 2, 8, 8, 8)


def test_registry_rejects_unknown_names_and_arguments():
    with pytest.raises(InputError, match="unknown network"):
        build_network("unet9d", {}, 2)
    with pytest.raises(InputError, match="resunet3d"):
        build_network("resunet3d", {"depth": 3}, 2)
