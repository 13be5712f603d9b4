"""The organ/lesion head targets of a dual-decoder network, and ignored voxels in the loss."""

from __future__ import annotations

import torch

from flareseg.training.losses import IGNORE, build_loss, dice_ce_loss, split_heads


def test_ignored_voxels_count_in_neither_term():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 6)
    target = torch.tensor([[0, 1, IGNORE, 2, IGNORE, 1]])
    annotated = torch.ones(1, 3, dtype=torch.bool)
    kept = [0, 1, 3, 5]
    expected = dice_ce_loss(logits[:, :, kept], target[:, kept], annotated)
    assert torch.allclose(dice_ce_loss(logits, target, annotated), expected, atol=1e-6)
    all_ignored = dice_ce_loss(logits, torch.full_like(target, IGNORE), annotated)
    assert torch.isfinite(all_ignored)


def test_split_heads_by_hand():
    # stage channels: 0 background, 1-2 organs, 3 lesion; merged label 0 = {1, 2}, merged label 1 = {2, 3}
    target = torch.tensor([[0, 1, 2, 3, 4, 5]])
    annotated = torch.tensor([[True, True, False, True]])
    sets = torch.tensor([[[False, True, True, False], [False, False, True, True]]])
    (organ_t, organ_a, organ_s), (lesion_t, lesion_a, lesion_s) = split_heads(target, annotated, sets, 3)
    assert organ_t.tolist() == [[0, 1, 2, IGNORE, 3, IGNORE]]  # merged {1, 2} is code 3 of the 3-channel head
    assert organ_a.tolist() == [[True, True, False]]
    assert organ_s.tolist() == [[[False, True, True], [False, False, False]]]
    assert lesion_t.tolist() == [[0, 0, 0, 1, 0, IGNORE]]
    assert lesion_a.tolist() == [[True, True]] and lesion_s is None


def test_a_two_head_output_adds_the_heads_losses():
    torch.manual_seed(1)
    organ, lesion = torch.randn(2, 3, 4, 4), torch.randn(2, 2, 4, 4)
    target = torch.randint(0, 4, (2, 4, 4))
    annotated = torch.ones(2, 4, dtype=torch.bool)
    loss = build_loss("dice_ce")({"organ": organ, "lesion": lesion}, target, annotated)
    organ_target = torch.where(target == 3, torch.full_like(target, IGNORE), target)
    lesion_target = (target == 3).long()
    expected = dice_ce_loss(organ, organ_target, annotated[:, :3]) + dice_ce_loss(lesion, lesion_target,
                                                                                  annotated[:, [0, 3]])
    assert torch.allclose(loss, expected, atol=1e-6)
