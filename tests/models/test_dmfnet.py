"""Attention DMFNet: DMFNet's size, the recipe's sizes, attention gates, learnt dilation weights,
grouped convolutions, ONNX export."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from flareseg.errors import InputError
from flareseg.models.dmfnet import AttentionGate, MultiFiberUnit
from flareseg.models.registry import build_network
from flareseg.recipes import load_recipe

SMALL = {"stem_channels": 16, "channels": 32, "groups": 16, "levels": 3, "units": 2}


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _recipe_networks():
    recipe = load_recipe("attention_dmfnet")
    for stage in recipe.stages:
        network = recipe.stage_network(stage)
        yield stage, build_network(network.name, network.kwargs, stage.channels)


def test_without_its_gates_the_network_has_dmfnets_published_size():
    # DMFNet (MICCAI 2019): 4 MRI channels, 4 classes, batch norm, widths 32 / 128: 3.88M parameters.
    net = build_network("attention_dmfnet", {"in_channels": 4, "norm": "batch"}, 4)
    assert _count(net) - _count(net.gates) == 3_875_890
    assert net.size_multiple == 16


def test_recipe_networks_are_small_and_give_finite_logits_at_the_recipes_sizes():
    torch.manual_seed(0)
    for stage, net in _recipe_networks():
        assert _count(net) < 1_100_000
        x = torch.rand(1, 1, *stage.size_zyx)
        with torch.no_grad():
            logits, attention = net.eval()(x, return_attention=True)
        assert logits.shape == (1, stage.channels, *stage.size_zyx)
        assert torch.isfinite(logits).all()
        # one coefficient per voxel of each skip level (1/2, 1/4, 1/8 of the input), in [0, 1]
        assert [tuple(a.shape) for a in attention] == [
            (1, 1, *(s // 2 ** k for s in stage.size_zyx)) for k in (1, 2, 3)]
        assert all(float(a.min()) >= 0 and float(a.max()) <= 1 for a in attention)


def test_attention_gate_by_hand():
    gate = AttentionGate(skip_channels=2, gating_channels=1)  # one inner channel
    with torch.no_grad():
        gate.skip.weight.copy_(torch.tensor([1.0, -1.0]).view(1, 2, 1, 1, 1))
        gate.gating.weight.fill_(2.0)
        gate.gating.bias.fill_(0.5)
        gate.psi.weight.fill_(3.0)
        gate.psi.bias.fill_(-1.0)
    x = torch.tensor([[1.0, 0.0], [0.0, 4.0]]).view(1, 2, 1, 1, 2)  # two voxels: (1, 0) and (0, 4)
    g = torch.tensor([0.25, 0.5]).view(1, 1, 1, 1, 2)
    # voxel 1: relu(1 - 0 + 2 * 0.25 + 0.5) = 2 -> sigmoid(3 * 2 - 1); voxel 2: relu(0 - 4 + 1 + 0.5) = 0 -> sigmoid(-1)
    expected = torch.sigmoid(torch.tensor([5.0, -1.0])).view(1, 1, 1, 1, 2)
    assert torch.allclose(gate(x, g), expected)


def _with_skips_scaled(net, x, scale: float) -> torch.Tensor:
    """The network's forward pass with every attention coefficient replaced by ``scale``."""
    from flareseg.models.dmfnet import _upsample

    skips = [net.stem(x)]
    for block in net.encoder:
        skips.append(block(skips[-1]))
    y = skips.pop()
    for decode in net.decoder:
        features, g = skips.pop(), _upsample(y)
        y = decode(torch.cat([scale * features, g], dim=1))
    return _upsample(net.head(y))


def test_the_coefficients_multiply_the_skip_features():
    torch.manual_seed(0)
    net = build_network("attention_dmfnet", SMALL, 3).eval()
    x = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        for scale, bias in ((0.0, -1e4), (1.0, 1e4)):  # gates shut, gates open (plain DMFNet)
            for gate in net.gates:
                gate.psi.weight.zero_()
                gate.psi.bias.fill_(bias)
            logits, attention = net(x, return_attention=True)
            assert torch.equal(net(x), logits)  # the flag changes what is returned, not the logits
            assert all(torch.all(a == scale) for a in attention)
            assert torch.allclose(logits, _with_skips_scaled(net, x, scale), atol=1e-5)
        assert not torch.allclose(_with_skips_scaled(net, x, 0.0), _with_skips_scaled(net, x, 1.0))


def test_dmf_units_learn_one_weight_per_dilation_and_every_weight_gets_a_gradient():
    torch.manual_seed(0)
    net = build_network("attention_dmfnet", SMALL, 3).train()
    units = [m for m in net.modules() if isinstance(m, MultiFiberUnit)]
    dilated = [u for u in units if u.branch_weights is not None]
    # levels 3: one DMF block of 2 units; the bottleneck and the 2 decoder levels are MF units
    assert len(dilated) == 2 and len(units) == 2 + 2 + 2
    for unit in dilated:
        assert unit.branch_weights.tolist() == [1.0, 1.0, 1.0]
        assert [b[-1].dilation for b in unit.branches] == [(1, 1, 1), (2, 2, 2), (3, 3, 3)]
    net(torch.rand(2, 1, 16, 16, 16)).logsumexp(1).mean().backward()
    for unit in dilated:
        assert unit.branch_weights.grad is not None and (unit.branch_weights.grad != 0).all()
    names = [name for name, _ in net.named_parameters() if name.endswith("branch_weights")]
    assert names == ["encoder.0.0.branch_weights", "encoder.0.1.branch_weights"]


def test_a_dmf_unit_with_its_dilation_weights_at_zero_is_its_shortcut():
    unit = MultiFiberUnit(16, 32, groups=16, stride=2, dilations=(1, 2, 3)).eval()
    x = torch.rand(1, 16, 8, 8, 8)
    with torch.no_grad():
        unit.branch_weights.zero_()
        assert torch.allclose(unit(x), unit.shortcut(x), atol=1e-6)


def test_three_by_three_convolutions_are_grouped_into_16_fibers_after_a_dense_multiplexer():
    _, net = next(_recipe_networks())
    convs = [m for m in net.modules() if isinstance(m, nn.Conv3d)]
    spatial = [c for c in convs if c.kernel_size in ((3, 3, 3), (1, 3, 3)) and c is not net.stem]
    assert spatial and all(c.groups == 16 for c in spatial)
    assert all(c.weight.shape[1] == c.in_channels // 16 for c in spatial)
    dense = [c for c in convs if c not in spatial]
    assert all(c.groups == 1 for c in dense)
    for unit in (m for m in net.modules() if isinstance(m, MultiFiberUnit)):
        assert all(layer[-1].groups == 1 and layer[-1].kernel_size == (1, 1, 1) for layer in unit.multiplexer)


def test_rejects_widths_that_do_not_split_into_fibers_and_bad_sizes():
    with pytest.raises(InputError, match="multiples of groups"):
        build_network("attention_dmfnet", {"channels": 24}, 2)
    with pytest.raises(InputError, match="levels"):
        build_network("attention_dmfnet", {"levels": 1}, 2)
    with pytest.raises(InputError, match="norm"):
        build_network("attention_dmfnet", {"norm": "group"}, 2)
    with pytest.raises(InputError, match="dilations"):
        build_network("attention_dmfnet", {"dilations": []}, 2)
    with pytest.raises(ValueError, match="multiple of 8"):
        build_network("attention_dmfnet", SMALL, 2)(torch.zeros(1, 1, 16, 16, 12))


def test_onnx_export_with_dynamic_axes_matches_pytorch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    net = build_network("attention_dmfnet", SMALL, 4).eval()
    path = tmp_path / "dmfnet.onnx"
    axes = {name: {2: "depth", 3: "height", 4: "width"} for name in ("image", "logits")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.rand(1, 1, 16, 32, 32),), str(path), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["logits"], dynamic_axes=axes)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for shape in [(1, 1, 16, 32, 32), (1, 1, 24, 16, 40)]:
        x = rng.random(shape, dtype=np.float32)
        with torch.no_grad():
            expected = net(torch.from_numpy(x)).numpy()
        got = session.run(None, {"image": x})[0]
        assert got.shape == (1, 4, *shape[2:])
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
