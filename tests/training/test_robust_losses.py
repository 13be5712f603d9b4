"""Losses robust to wrong labels (GCE, SCE, beta-CE) and the separate loss of pseudo-labels."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flareseg.errors import InputError
from flareseg.training.losses import (IGNORE, beta_ce_loss, build_loss, build_recipe_loss, dice_ce_loss, gce_loss,
                                      pseudo_label_loss, sce_loss, split_heads, split_pseudo_labels)

# Two voxels, three channels: logits per voxel, and the labels 0 and 2.
VOXELS = [(0.5, -1.0, 2.0), (1.5, 0.2, -0.3)]
LABELS = [0, 2]


def _softmax(values):
    total = sum(math.exp(v) for v in values)
    return [math.exp(v) / total for v in values]


def _tensors(voxels=VOXELS, labels=LABELS, annotated=(True, True, True)):
    logits = torch.tensor(voxels, dtype=torch.float32).T.reshape(1, len(voxels[0]), len(voxels))  # [1, C, N]
    return logits, torch.tensor([labels]), torch.tensor([annotated])


def _label_probabilities():
    return [_softmax(v)[y] for v, y in zip(VOXELS, LABELS)]


def _ce():
    return sum(-math.log(p) for p in _label_probabilities()) / 2


LOSS_FUNCTIONS = {"gce": gce_loss, "sce": sce_loss, "beta_ce": beta_ce_loss}


def test_gce_by_hand_and_its_limits():
    logits, target, annotated = _tensors()
    p = _label_probabilities()
    q = 0.7
    expected = ((1 - p[0] ** q) / q + (1 - p[1] ** q) / q) / 2
    assert gce_loss(logits, target, annotated, q=q).item() == pytest.approx(expected, rel=1e-6)
    mae = ((1 - p[0]) + (1 - p[1])) / 2
    assert gce_loss(logits, target, annotated, q=1.0).item() == pytest.approx(mae, rel=1e-6)
    # q -> 0: (1 - p^q) / q = -log p - q log^2 p / 2 + ...
    assert gce_loss(logits, target, annotated, q=1e-4).item() == pytest.approx(_ce(), rel=1e-3)


def test_sce_by_hand_and_with_only_its_ce_term():
    logits, target, annotated = _tensors()
    p = _label_probabilities()
    # alpha 0.1, beta 1, A = -4: 0.1 * (-log p) + 1 * -(-4) * (1 - p)
    expected = sum(0.1 * -math.log(pi) + 4 * (1 - pi) for pi in p) / 2
    assert sce_loss(logits, target, annotated).item() == pytest.approx(expected, rel=1e-6)
    assert sce_loss(logits, target, annotated, ce_weight=1.0, rce_weight=0.0).item() == \
        pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-6)
    assert sce_loss(logits, target, annotated, ce_weight=1.0, rce_weight=0.0).item() == pytest.approx(_ce(), rel=1e-6)
    rce_only = sum(2.0 * (1 - pi) for pi in p) / 2  # A = -2, no CE
    assert sce_loss(logits, target, annotated, ce_weight=0.0, rce_weight=1.0, log_zero=-2.0).item() == \
        pytest.approx(rce_only, rel=1e-6)


def test_beta_ce_by_hand_is_the_papers_plus_one_over_beta_and_tends_to_ce():
    logits, target, annotated = _tensors()
    beta = 0.5
    per_voxel = []
    for values, label in zip(VOXELS, LABELS):
        p = _softmax(values)
        futami = -(beta + 1) / beta * p[label] ** beta + sum(pk ** (beta + 1) for pk in p)
        per_voxel.append(futami + 1 / beta)
    assert beta_ce_loss(logits, target, annotated, beta=beta).item() == pytest.approx(sum(per_voxel) / 2, rel=1e-6)
    # beta -> 0: -(b+1)/b (1 + b log p) + sum_k p_k (1 + b log p_k) = -1/b - log p + O(b), so + 1/b -> CE
    assert beta_ce_loss(logits, target, annotated, beta=1e-3).item() == pytest.approx(_ce(), rel=1e-2)
    assert abs(beta_ce_loss(logits, target, annotated, beta=1e-3).item() - _ce()) < \
        abs(beta_ce_loss(logits, target, annotated, beta=1e-2).item() - _ce())


def test_a_certain_right_prediction_costs_nothing():
    logits = torch.tensor([[[30.0, -30.0], [-30.0, 30.0]]])  # voxel 0 says 0, voxel 1 says 1
    target, annotated = torch.tensor([[0, 1]]), torch.ones(1, 2, dtype=torch.bool)
    for function in LOSS_FUNCTIONS.values():
        assert function(logits, target, annotated).item() == pytest.approx(0.0, abs=1e-5)


def test_dice_weight_adds_the_marginal_dice_of_dice_ce():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    annotated = torch.ones(2, 3, dtype=torch.bool)
    dice = dice_ce_loss(logits, target, annotated, ce_weight=0.0)
    for function in LOSS_FUNCTIONS.values():
        assert function(logits, target, annotated, dice_weight=2.0).item() == \
            pytest.approx(function(logits, target, annotated).item() + 2 * dice.item(), rel=1e-5)


@pytest.mark.parametrize("name", sorted(LOSS_FUNCTIONS))
@pytest.mark.parametrize("dice_weight", [0.0, 1.0])
def test_ignored_voxels_contribute_nothing(name, dice_weight):
    function = LOSS_FUNCTIONS[name]
    torch.manual_seed(1)
    logits = torch.randn(1, 3, 6)
    target = torch.tensor([[0, 1, IGNORE, 2, IGNORE, 1]])
    annotated = torch.ones(1, 3, dtype=torch.bool)
    loss = function(logits, target, annotated, dice_weight=dice_weight)
    changed = logits.clone()
    changed[:, :, [2, 4]] = torch.tensor([[40.0, -7.0], [-40.0, 3.0], [0.0, 25.0]])
    assert function(changed, target, annotated, dice_weight=dice_weight).item() == pytest.approx(loss.item(), abs=1e-6)
    kept = [0, 1, 3, 5]
    assert function(logits[:, :, kept], target[:, kept], annotated, dice_weight=dice_weight).item() == \
        pytest.approx(loss.item(), abs=1e-6)
    everything_ignored = logits.clone().requires_grad_(True)
    zero = function(everything_ignored, torch.full_like(target, IGNORE), annotated, dice_weight=dice_weight)
    zero.backward()
    assert torch.isfinite(zero) and torch.isfinite(everything_ignored.grad).all()


@pytest.mark.parametrize("name", sorted(LOSS_FUNCTIONS))
def test_predicting_an_unannotated_class_on_background_costs_nothing(name):
    function = LOSS_FUNCTIONS[name]
    target = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    target[0, :2] = 1  # class 1 annotated and present; the rest is "background" in the label
    says_class2 = torch.full((1, 3, 4, 4, 4), -10.0)
    says_class2[0, 1, :2] = 10
    says_class2[0, 2, 2:] = 10  # the net calls the rest class 2, which this case does not annotate
    partial = torch.tensor([[True, True, False]])
    full = torch.ones(1, 3, dtype=torch.bool)
    for dice_weight in (0.0, 1.0):
        assert function(says_class2, target, partial, dice_weight=dice_weight).item() < 1e-3
        assert function(says_class2, target, full, dice_weight=dice_weight).item() > 0.4  # annotated: wrong


def test_a_merged_label_is_one_class_the_sum_of_its_members():
    # One voxel, channels background/stomach/duodenum; the label says "stomach or duodenum" (target 3 = set 0).
    values = (0.3, -1.2, 0.8)
    logits = torch.tensor(values).view(1, 3, 1)
    target = torch.full((1, 1), 3)
    annotated = torch.ones(1, 3, dtype=torch.bool)
    sets = torch.tensor([[[False, True, True]]])
    p = _softmax(values)
    p_set = p[1] + p[2]
    assert gce_loss(logits, target, annotated, q=0.5, sets=sets).item() == pytest.approx((1 - p_set ** 0.5) / 0.5,
                                                                                         rel=1e-6)
    assert sce_loss(logits, target, annotated, sets=sets).item() == \
        pytest.approx(0.1 * -math.log(p_set) + 4 * (1 - p_set), rel=1e-6)
    beta = 0.5  # the classes of the sum are background and the set
    expected = (1 - (beta + 1) * p_set ** beta) / beta + p[0] ** (beta + 1) + p_set ** (beta + 1)
    assert beta_ce_loss(logits, target, annotated, beta=beta, sets=sets).item() == pytest.approx(expected, rel=1e-6)
    for function in LOSS_FUNCTIONS.values():  # with Dice: the set's Dice replaces its members'
        assert torch.isfinite(function(logits, target, annotated, dice_weight=1.0, sets=sets))


@pytest.mark.parametrize("name", sorted(LOSS_FUNCTIONS))
def test_gradients_are_finite_with_masked_channels_sets_ignored_voxels_and_extreme_logits(name):
    torch.manual_seed(2)
    logits = (torch.randn(2, 4, 4, 4, 4) * 40).requires_grad_(True)
    target = torch.randint(0, 3, (2, 4, 4, 4))
    target[0, 0] = 4  # merged label {1, 2}
    target[1, 1] = IGNORE
    annotated = torch.tensor([[True, True, True, False], [True, True, True, True]])
    sets = torch.tensor([[[False, True, True, False]], [[False, False, False, False]]])
    loss = LOSS_FUNCTIONS[name](logits, target, annotated, dice_weight=1.0, sets=sets)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_recipe_names_arguments_and_their_ranges():
    for name in ("gce", "sce", "beta_ce"):
        assert build_loss(name)  # the defaults are admissible
    with pytest.raises(InputError, match=r"q must be a number in \(0, 1\]"):
        build_loss("gce", {"q": 0})
    with pytest.raises(InputError, match="q must be"):
        build_loss("gce", {"q": 1.5})
    with pytest.raises(InputError, match="beta must be a number > 0"):
        build_loss("beta_ce", {"beta": 0.0})
    with pytest.raises(InputError, match="log_zero must be a number < 0"):
        build_loss("sce", {"log_zero": 4})
    with pytest.raises(InputError, match="rce_weight"):
        build_loss("sce", {"rce_weight": -1})
    with pytest.raises(InputError, match="does not take 'alpha'"):
        build_loss("sce", {"alpha": 0.1})
    with pytest.raises(InputError, match="does not take 'q'"):
        build_loss("dice_ce", {"q": 0.5})
    torch.manual_seed(3)
    outputs = [torch.randn(1, 3, 4, 4), torch.randn(1, 3, 2, 2)]
    target = torch.randint(0, 3, (1, 4, 4))
    annotated = torch.ones(1, 3, dtype=torch.bool)
    deep = build_loss("gce", {"q": 0.5}, deep_supervision=True)(outputs, target, annotated)
    assert deep.item() == pytest.approx(gce_loss(outputs[0], target, annotated, q=0.5).item(), abs=1e-6)


# --- pseudo-labels with a loss of their own -------------------------------------------------------

def test_split_pseudo_labels_by_hand():
    # channels: 0 background, 1 the case's own class, 2 and 3 the teacher's; merged label 0 = {1, 2}
    target = torch.tensor([[0, 1, 2, 3, 4, IGNORE]])
    annotated = torch.tensor([[True, True, True, True]])
    own_annotated = torch.tensor([[True, True, False, False]])
    sets = torch.tensor([[[False, True, True, False]]])
    (own_t, own_a, own_s), (teacher_t, teacher_a, teacher_s) = split_pseudo_labels(target, annotated,
                                                                                    own_annotated, sets)
    assert own_t.tolist() == [[0, 1, 0, 0, 4, IGNORE]]  # the teacher's voxels are what the case calls background
    assert own_a.tolist() == [[True, True, False, False]]
    assert own_s.tolist() == [[[True, True, False, False]]]  # member 2 is not the case's own: "1 or another"
    assert teacher_t.tolist() == [[0, IGNORE, 2, 3, IGNORE, IGNORE]]  # the case's own voxels are not the teacher's
    assert teacher_a.tolist() == [[True, False, True, True]] and teacher_s is None


def test_pseudo_label_loss_weighs_each_part_by_its_cases():
    torch.manual_seed(4)
    logits = torch.randn(3, 4, 5, 5)
    target = torch.randint(0, 4, (3, 5, 5))
    annotated = torch.ones(3, 4, dtype=torch.bool)
    own_annotated = torch.tensor([[True] * 4,  # a real case
                                  [True, True, False, False],  # partial: class 1 its own, 2 and 3 the teacher's
                                  [True, False, False, False]])  # unlabelled: all the teacher's
    own_loss, teacher_loss = build_loss("dice_ce"), build_loss("gce", {"q": 0.7})
    loss = pseudo_label_loss(own_loss, teacher_loss, 0.5)(logits, target, annotated, None, own_annotated)
    # by hand: the own part of cases 0 and 1, the teacher's of cases 1 and 2
    own_target = target[:2].clone()
    own_target[1][target[1] >= 2] = 0
    teacher_target = target[1:].clone()
    teacher_target[0][target[1] == 1] = IGNORE
    teacher_annotated = torch.tensor([[True, False, True, True], [True, True, True, True]])
    expected = (2 / 3) * dice_ce_loss(logits[:2], own_target, own_annotated[:2]) \
        + 0.5 * (2 / 3) * gce_loss(logits[1:], teacher_target, teacher_annotated, q=0.7)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # no case with pseudo-labels, or no own_annotated: the recipe's loss alone
    plain = own_loss(logits, target, annotated)
    combined = pseudo_label_loss(own_loss, teacher_loss, 0.5)
    assert combined(logits, target, annotated, None, annotated.clone()).item() == pytest.approx(plain.item())
    assert combined(logits, target, annotated).item() == pytest.approx(plain.item())
    # weight 0 and only unlabelled cases: nothing to learn, but a loss that backpropagates
    net_out = logits[2:].clone().requires_grad_(True)
    zero = pseudo_label_loss(own_loss, teacher_loss, 0.0)(net_out, target[2:], annotated[2:], None, own_annotated[2:])
    zero.backward()
    assert zero.item() == 0 and torch.equal(net_out.grad, torch.zeros_like(net_out))


def test_recipe_loss_without_a_pseudo_loss_ignores_own_annotated():
    from flareseg.recipes.schema import LossConfig, PseudoLossConfig

    torch.manual_seed(5)
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    annotated = torch.ones(2, 3, dtype=torch.bool)
    own_annotated = torch.tensor([[True, True, True], [True, False, False]])
    plain = dice_ce_loss(logits, target, annotated)
    assert build_recipe_loss(LossConfig())(logits, target, annotated, None, own_annotated).item() == \
        pytest.approx(plain.item())
    split = build_recipe_loss(LossConfig(pseudo=PseudoLossConfig("sce", {"rce_weight": 2.0}, 0.25)))
    assert split(logits, target, annotated, None, own_annotated).item() != pytest.approx(plain.item())
    with pytest.raises(InputError, match="q must be"):
        build_recipe_loss(LossConfig(pseudo=PseudoLossConfig("gce", {"q": 3})))


def test_an_ignored_voxel_is_ignored_by_both_heads_of_a_two_head_network():
    target = torch.tensor([[0, 1, 3, IGNORE]])  # stage channels: background, organs 1-2, lesion 3
    annotated = torch.ones(1, 4, dtype=torch.bool)
    (organ_t, _, _), (lesion_t, _, _) = split_heads(target, annotated, None, 3)
    assert organ_t.tolist() == [[0, 1, IGNORE, IGNORE]]
    assert lesion_t.tolist() == [[0, 0, 1, IGNORE]]
    torch.manual_seed(6)
    organ, lesion = torch.randn(1, 3, 4), torch.randn(1, 2, 4)
    loss = build_loss("gce", {"dice_weight": 1.0})
    before = loss({"organ": organ, "lesion": lesion}, target, annotated)
    organ[..., 3], lesion[..., 3] = torch.tensor([9.0, -9.0, 0.0]), torch.tensor([-9.0, 9.0])
    assert loss({"organ": organ, "lesion": lesion}, target, annotated).item() == pytest.approx(before.item(), abs=1e-6)


def test_batches_carry_what_each_case_annotates_itself():
    from flareseg.training.loop import batch_own_annotated
    from flareseg.training.samples import Sample

    image, label = np.zeros((4, 4, 4), np.float16), np.zeros((4, 4, 4), np.uint8)
    every = np.array([True, True, True])
    real = Sample("a", image, label, every, np.zeros((0, 3), bool))
    pseudo = Sample("b", image, label, every, np.zeros((0, 3), bool), own_annotated=np.array([True, True, False]))
    assert batch_own_annotated([real, pseudo], [0, 0], "cpu") is None
    assert batch_own_annotated([real, pseudo], [1, 0], "cpu").tolist() == [[True, True, False], [True, True, True]]


# --- on real scans --------------------------------------------------------------------------------

def test_a_recipe_trains_pseudo_labels_with_their_own_loss_and_weight(real_dataset, tmp_path, monkeypatch):
    import yaml

    from flareseg.data import default_model_dir
    from flareseg.inference.model import read_recipe
    from flareseg.recipes import recipe_from_dict, recipe_to_dict
    from flareseg.training import loop
    from flareseg.training.loop import RunOptions
    from flareseg.training.train import train_model

    from .conftest import tiny_recipe_dict

    data = tiny_recipe_dict(iterations_per_epoch=2)
    data["stages"] = data["stages"][:1]  # the whole-volume stage
    data["stages"][0]["phases"] = [{"epochs": 1},
                                   {"epochs": 1, "pseudo_labels": True, "cases": ["some_organs", "unlabelled"]}]
    data["train"]["loss"]["pseudo"] = {"name": "gce", "kwargs": {"q": 0.7, "dice_weight": 1.0}, "weight": 0.5}
    recipe = recipe_from_dict(yaml.safe_load(yaml.safe_dump(data)))
    assert recipe_from_dict(yaml.safe_load(yaml.safe_dump(recipe_to_dict(recipe)))) == recipe
    assert recipe_to_dict(recipe)["train"]["loss"]["pseudo"] == data["train"]["loss"]["pseudo"]

    seen = []  # (whether the batch held pseudo-labels, the loss)

    def spying(config):
        built = build_recipe_loss(config)

        def loss(outputs, target, annotated, sets=None, own_annotated=None):
            value = built(outputs, target, annotated, sets, own_annotated)
            seen.append((own_annotated is not None and bool((own_annotated != annotated).any()), value.item()))
            return value
        return loss

    monkeypatch.setattr(loop, "build_recipe_loss", spying)
    model_dir = train_model(real_dataset, recipe, tmp_path / "model", RunOptions(progress=False),
                            teacher=default_model_dir())
    assert [pseudo for pseudo, _ in seen] == [False] * 2 + [True] * 2  # phase 2: the aorta case and the unlabelled one
    assert all(math.isfinite(value) for _, value in seen)
    log = json.loads((model_dir / "training" / "coarse" / "log.json").read_text())
    assert [row["phase"] for row in log] == [1, 2] and all(math.isfinite(row["train_loss"]) for row in log)
    assert read_recipe(model_dir) == recipe
