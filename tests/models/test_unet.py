"""The nnU-Net v1 style PlainUNet: parameter count, deep-supervision outputs, skips, ONNX export."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from flareseg.errors import InputError
from flareseg.models.registry import build_network

SMALL = {"base_channels": 4, "max_channels": 16, "levels": 3}


def _count(net) -> int:
    return sum(p.numel() for p in net.parameters())


def test_parameter_count_matches_the_flare21_2d_nnunet():
    # FLARE21 2D nnU-Net short paper: 512x512 slices, 7 poolings, widths 32..480, 4 foreground organs.
    net = build_network("unet", {"spatial_dims": 2, "base_channels": 32, "max_channels": 480, "levels": 7}, 5)
    assert _count(net) == 41_268_192
    assert net.size_multiple == 128


@pytest.mark.parametrize("spatial", [(32, 32), (16, 16, 16)])
def test_training_returns_one_output_per_decoder_level_highest_resolution_first(spatial):
    torch.manual_seed(0)
    net = build_network("unet", {**SMALL, "spatial_dims": len(spatial)}, 3)
    x = torch.rand(1, 1, *spatial)
    net.train()
    outputs = net(x)
    assert isinstance(outputs, list) and len(outputs) == 3
    for level, out in enumerate(outputs):
        assert out.shape == (1, 3, *(s // 2 ** level for s in spatial))
    net.eval()
    with torch.no_grad():
        out = net(x)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, *spatial)
    assert torch.allclose(out, net.train()(x)[0].detach(), atol=1e-5)  # instance norm: same in both modes


def test_without_deep_supervision_training_returns_one_tensor():
    net = build_network("unet", {**SMALL, "deep_supervision": False}, 2).train()
    out = net(torch.rand(2, 1, 16, 24))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 2, 16, 24)


def test_skip_connections_switch_without_changing_parameters():
    with_skip = build_network("unet", {**SMALL, "skip": True}, 3).eval()
    without = build_network("unet", {**SMALL, "skip": False}, 3).eval()
    shapes = {k: v.shape for k, v in with_skip.state_dict().items()}
    assert shapes == {k: v.shape for k, v in without.state_dict().items()}
    without.load_state_dict(with_skip.state_dict())  # strict load
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(with_skip(x), without(x))
        with_skip.skip = False
        assert torch.allclose(with_skip(x), without(x))


def test_rejects_bad_settings_and_input_sizes():
    with pytest.raises(InputError, match="spatial_dims"):
        build_network("unet", {"spatial_dims": 1}, 2)
    with pytest.raises(InputError, match="norm"):
        build_network("unet", {"norm": "group"}, 2)
    with pytest.raises(ValueError, match="multiple of 8"):
        build_network("unet", SMALL, 2)(torch.zeros(1, 1, 32, 20))


def test_onnx_export_with_dynamic_axes_matches_pytorch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    net = build_network("unet", SMALL, 4).eval()
    path = tmp_path / "unet.onnx"
    dynamic = {name: {0: "batch", 2: "height", 3: "width"} for name in ("image", "logits")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.rand(1, 1, 32, 32),), str(path), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["logits"], dynamic_axes=dynamic)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for shape in [(1, 1, 32, 32), (2, 1, 24, 40)]:
        x = rng.random(shape, dtype=np.float32)
        with torch.no_grad():
            expected = net(torch.from_numpy(x)).numpy()
        got = session.run(None, {"image": x})[0]
        assert got.shape == (shape[0], 4, *shape[2:])
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
