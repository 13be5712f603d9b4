"""The FLARE23 dual-decoder U-Net: branch outputs, the eval-mode lesion overlay, parameter
names for freezing, ONNX export, registry."""

from __future__ import annotations

import fnmatch
import warnings

import numpy as np
import pytest
import torch

from flareseg.errors import InputError
from flareseg.models.dual_unet import DualDecoderUNet
from flareseg.models.registry import build_network
from flareseg.models.unet import PlainUNet

# 5 classes: background, 3 organs, 1 lesion -> organ head 4 channels, lesion head 2.
SMALL = {"base_channels": 4, "max_channels": 16, "levels": 3, "split_levels": 2}
PARTS = ("encoder.*", "decoder.*", "organ_branch.*", "lesion_branch.*")


def _net(seed: int = 0, **kwargs) -> DualDecoderUNet:
    torch.manual_seed(seed)
    return build_network("dual_unet", {**SMALL, **kwargs}, 5)


def _count(net) -> int:
    return sum(p.numel() for p in net.parameters())


def test_parameter_count_is_the_plain_unet_with_the_split_levels_twice():
    net = build_network("dual_unet", {}, 15)
    assert net.size_multiple == 32
    assert _count(net) == 18_848_160
    # Same encoder/decoder as a PlainUNet of the same shape (widths 32, 64, 128, 256, 480, 480),
    # its deep-supervision heads replaced by the two full-resolution heads (14 and 2 classes, 32 wide),
    # and the two highest decoder levels (64 -> 32 and 128 -> 64) once more.
    plain = PlainUNet(out_channels=15, levels=5)
    heads = sum(p.numel() for p in plain.heads.parameters())
    level = sum(p.numel() for m in (plain.up[-1], plain.decoder[-1]) for p in m.parameters())
    level2 = sum(p.numel() for m in (plain.up[-2], plain.decoder[-2]) for p in m.parameters())
    assert _count(net) == _count(plain) - heads + 32 * 14 + 32 * 2 + level + level2


def test_training_returns_organ_and_lesion_logits_and_eval_one_tensor():
    net = _net().train()
    x = torch.rand(2, 1, 16, 24)
    organ, lesion = net(x).values()
    assert organ.shape == (2, 4, 16, 24) and lesion.shape == (2, 2, 16, 24)
    with torch.no_grad():
        out = net.eval()(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5, 16, 24)


def test_eval_argmax_is_the_organ_argmax_with_the_lesion_overlaid():
    net = _net().train()
    with torch.no_grad():
        net.lesion_branch.head.weight.mul_(20)  # make the lesion margin vary in sign over the image
        x = torch.rand(1, 1, 32, 32)
        organ, lesion = net(x).values()  # instance norm: no running stats, so train and eval agree
        out = net.eval()(x)
    is_lesion = lesion[:, 1] > lesion[:, 0]
    assert 0 < is_lesion.float().mean() < 1
    expected = torch.where(is_lesion, 4, organ.argmax(1))
    assert torch.equal(out.argmax(1), expected)
    assert torch.allclose(out[:, :4], torch.log_softmax(organ, 1), atol=1e-5)
    assert (out[:, :4] <= 0).all()


def _pixels(rows) -> torch.Tensor:
    """``[1, C, P, 1]`` logits from one row of C channel values per pixel."""
    return torch.tensor(rows).T[None, :, :, None]


def test_overlay_by_hand():
    organ = _pixels([[2.0, 2.0, 2.0], [0.0, 5.0, 0.0], [1.0, 0.0, 9.0]])  # background + 2 organs
    lesion = _pixels([[0.0, 0.5], [0.0, 0.0], [1.0, 1.0]])  # lesion background, lesion
    out = DualDecoderUNet.combine(organ, lesion)
    # pixel 0: lesion beats its background by 0.5 > 0 -> lesion (channel 3), score 0.5 > log(1/3);
    # pixels 1 and 2: lesion ties its background -> no lesion, score 0 - 1e4 -> organ argmax 1 and 2.
    assert out.argmax(1).flatten().tolist() == [3, 1, 2]
    assert out[0, 3].flatten().tolist() == [0.5, -1e4, -1e4]
    assert torch.allclose(out[0, :3, 0, 0], torch.full((3,), -np.log(3.0)))
    # Two lesion classes (channels 3 and 4): the larger wins where it beats the lesion background.
    two = _pixels([[0.0, 1.0, 3.0], [2.0, 0.0, 1.0], [0.0, 2.0, 1.0]])
    assert DualDecoderUNet.combine(organ, two).argmax(1).flatten().tolist() == [4, 1, 3]


def test_branch_patterns_partition_the_parameters_and_lesion_training_leaves_organs_alone():
    net = _net().train()
    names = [name for name, _ in net.named_parameters()]
    for name in names:
        assert sum(fnmatch.fnmatchcase(name, p) for p in PARTS) == 1, name
    assert all(any(fnmatch.fnmatchcase(n, p) for n in names) for p in PARTS)
    assert {"organ_branch.head.weight", "lesion_branch.head.weight"} <= set(names)

    trainable = []
    for name, parameter in net.named_parameters():
        parameter.requires_grad_(fnmatch.fnmatchcase(name, "lesion_branch.*"))
        if parameter.requires_grad:
            trainable.append(parameter)
    x = torch.rand(2, 1, 16, 16)
    organ_before, lesion_before = (t.detach().clone() for t in net(x).values())
    optimizer = torch.optim.SGD(trainable, lr=0.1)
    lesion = net(x)["lesion"]
    lesion[:, 1].mean().backward()
    optimizer.step()
    organ_after, lesion_after = net(x).values()
    assert torch.equal(organ_after, organ_before)
    assert not torch.allclose(lesion_after, lesion_before)


def test_skip_connections_switch_without_changing_parameters():
    with_skip = _net(skip=True).eval()
    without = _net(skip=False).eval()
    assert {k: v.shape for k, v in with_skip.state_dict().items()} == \
        {k: v.shape for k, v in without.state_dict().items()}
    without.load_state_dict(with_skip.state_dict())  # strict load
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(with_skip(x), without(x))
        with_skip.skip = False
        assert torch.allclose(with_skip(x), without(x))


def test_registry_builds_it_and_rejects_bad_split_levels():
    net = build_network("dual_unet", SMALL, 5)
    assert isinstance(net, DualDecoderUNet) and net.size_multiple == 8
    assert build_network("dual_unet", {**SMALL, "split_levels": 3}, 5).decoder.__len__() == 0
    for bad in (0, 4):
        with pytest.raises(InputError, match="split_levels"):
            build_network("dual_unet", {**SMALL, "split_levels": bad}, 5)
    with pytest.raises(InputError, match="out_channels"):
        build_network("dual_unet", SMALL, 2)  # background + lesion leaves no organ
    with pytest.raises(ValueError, match="multiple of 8"):
        net(torch.zeros(1, 1, 16, 20))


def test_onnx_export_with_dynamic_axes_matches_pytorch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net = _net().eval()
    path = tmp_path / "dual_unet.onnx"
    dynamic = {name: {0: "batch", 2: "height", 3: "width"} for name in ("image", "logits")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.rand(1, 1, 16, 16),), str(path), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["logits"], dynamic_axes=dynamic)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for shape in [(1, 1, 16, 16), (2, 1, 24, 40)]:
        x = rng.random(shape, dtype=np.float32)
        with torch.no_grad():
            expected = net(torch.from_numpy(x)).numpy()
        got = session.run(None, {"image": x})[0]
        assert got.shape == (shape[0], 5, *shape[2:])
        # rtol: "no lesion" scores sit near -1e4, where one float32 step is about 1e-3.
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-6)
        assert np.array_equal(got.argmax(1), expected.argmax(1))
