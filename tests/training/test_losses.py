"""Dice + CE with marginal partial labels."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from flareseg.training.losses import dice_ce_loss, marginal_log_probs


def test_fully_annotated_equals_plain_dice_ce():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 6, 7)
    target = torch.randint(0, 4, (2, 5, 6, 7))
    annotated = torch.ones(2, 4, dtype=torch.bool)
    probs = logits.softmax(1)
    onehot = F.one_hot(target, 4).movedim(-1, 1).float()
    dice = (2 * (probs * onehot).sum((2, 3, 4)) + 1e-5) / (probs.sum((2, 3, 4)) + onehot.sum((2, 3, 4)) + 1e-5)
    expected = F.cross_entropy(logits, target) + 1 - dice[:, 1:].mean()
    assert torch.allclose(dice_ce_loss(logits, target, annotated), expected, atol=1e-5)


def test_unannotated_class_probability_counts_as_background():
    logits = torch.randn(1, 3, 2, 2, 2)
    annotated = torch.tensor([[True, True, False]])
    merged = marginal_log_probs(logits, annotated).exp()
    probs = logits.softmax(1)
    assert torch.allclose(merged[:, 0], probs[:, 0] + probs[:, 2], atol=1e-6)
    assert torch.allclose(merged[:, 1], probs[:, 1], atol=1e-6)
    assert torch.all(merged[:, 2] == 0)


def test_predicting_an_unannotated_class_on_background_is_not_punished():
    target = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    target[0, :2] = 1  # class 1 annotated and present; the rest is "background" in the label
    says_class2 = torch.full((1, 3, 4, 4, 4), -10.0)
    says_class2[0, 1, :2] = 10
    says_class2[0, 2, 2:] = 10  # the net calls the rest class 2
    says_background = says_class2.clone()
    says_background[0, 0, 2:], says_background[0, 2, 2:] = 10, -10
    partial = torch.tensor([[True, True, False]])
    full = torch.ones(1, 3, dtype=torch.bool)
    assert dice_ce_loss(says_class2, target, partial) < 1e-3
    assert torch.isclose(dice_ce_loss(says_class2, target, partial), dice_ce_loss(says_background, target, partial), atol=1e-4)
    assert dice_ce_loss(says_class2, target, full) > 1.0  # fully annotated: class 2 there is wrong


def test_gradients_flow_and_are_finite_with_masked_channels():
    logits = torch.randn(2, 3, 4, 4, 4, requires_grad=True)
    target = torch.randint(0, 2, (2, 4, 4, 4))
    annotated = torch.tensor([[True, True, False], [True, True, True]])
    dice_ce_loss(logits, target, annotated).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_a_merged_label_is_scored_on_the_sum_of_its_members_probabilities():
    # One voxel, channels background/stomach/duodenum; the label says "stomach or duodenum" (target 3 = set 0).
    logits = torch.tensor([0.3, -1.2, 0.8]).view(1, 3, 1, 1, 1)
    target = torch.full((1, 1, 1, 1), 3)
    annotated = torch.ones(1, 3, dtype=torch.bool)
    sets = torch.tensor([[[False, True, True]]])
    e = [math.exp(v) for v in (0.3, -1.2, 0.8)]
    p_set = (e[1] + e[2]) / sum(e)
    # CE: -log(p1 + p2). Dice: the members' own Dice is left out, the set's Dice takes its place.
    expected = -math.log(p_set) + 1 - (2 * p_set + 1e-5) / (p_set + 1 + 1e-5)
    loss = dice_ce_loss(logits, target, annotated, sets=sets)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_inside_a_merged_label_either_member_is_right_and_background_is_wrong():
    target = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    target[0, :2] = 3  # "stomach or duodenum"
    sets = torch.tensor([[[False, True, True]]])
    annotated = torch.ones(1, 3, dtype=torch.bool)

    def answer(channel_in_region):
        logits = torch.full((1, 3, 4, 4, 4), -10.0)
        logits[0, 0, 2:] = 10
        logits[0, channel_in_region, :2] = 10
        return dice_ce_loss(logits, target, annotated, sets=sets)

    assert answer(1) < 1e-3 and answer(2) < 1e-3
    assert answer(0) > 1.0


def test_no_sets_is_the_plain_loss():
    torch.manual_seed(1)
    logits, target = torch.randn(2, 3, 4, 4, 4), torch.randint(0, 3, (2, 4, 4, 4))
    annotated = torch.tensor([[True, True, True], [True, False, True]])
    empty = torch.zeros(2, 0, 3, dtype=torch.bool)
    unused = torch.zeros(2, 1, 3, dtype=torch.bool)  # a batch where another sample had a set
    plain = dice_ce_loss(logits, target, annotated)
    assert torch.allclose(dice_ce_loss(logits, target, annotated, sets=empty), plain)
    assert torch.allclose(dice_ce_loss(logits, target, annotated, sets=unused), plain)


def test_a_merged_label_that_also_stands_for_background_has_cross_entropy_only():
    # Stage of background/stomach/liver; the contour means "stomach, or duodenum of another stage" = {0, 1}.
    logits = torch.tensor([0.2, 0.9, -0.4]).view(1, 3, 1, 1, 1)
    target = torch.full((1, 1, 1, 1), 3)
    annotated = torch.ones(1, 3, dtype=torch.bool)
    sets = torch.tensor([[[True, True, False]]])
    e = [math.exp(v) for v in (0.2, 0.9, -0.4)]
    p = [v / sum(e) for v in e]
    # CE on log(p0 + p1); Dice only for the liver (channel 2, absent here: smooth / (p2 + smooth)).
    expected = -math.log(p[0] + p[1]) + 1 - 1e-5 / (p[2] + 1e-5)
    assert dice_ce_loss(logits, target, annotated, sets=sets).item() == pytest.approx(expected, rel=1e-5)
