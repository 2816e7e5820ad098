"""Cross-domain ClassMix of the consistency input (seg.con_mix=classmix)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sci2i.config import ConfigError, load_config
from sci2i.config.schema import NOT_A_RESULT, SINCE_ADDED, SegTrainConfig
from sci2i.pipeline.fingerprint import fingerprint
from sci2i.train.class_mix import class_mix_mask, mix_images, mix_teacher_logits, paired_source


def test_mask_takes_whole_classes_and_never_ignored_pixels():
    torch.manual_seed(0)
    labels = torch.tensor([[[0, 0, 1, 1], [2, 2, 255, 3]]]).repeat(200, 1, 1)
    mask = class_mix_mask(labels, num_classes=4)
    assert mask.shape == labels.shape and mask.dtype == torch.bool
    assert not mask[labels == 255].any()
    for c in range(4):  # every pixel of a class shares its class's draw
        per_image = mask[:, labels[0] == c]
        assert (per_image == per_image[:, :1]).all()
        share = per_image[:, 0].float().mean().item()
        assert 0.35 < share < 0.65, (c, share)  # chosen with probability 1/2
    # the classes of one image are drawn independently: not all-or-nothing
    chosen = torch.stack([mask[:, labels[0] == c][:, 0] for c in range(4)], 1)
    assert (chosen.sum(1) == 2).any() and (chosen.sum(1) == 1).any()


def test_mix_pastes_source_pixels_and_target_is_label_there_teacher_elsewhere():
    src = torch.full((2, 3, 2, 2), 0.9)
    trg = torch.full((2, 3, 2, 2), 0.1)
    mask = torch.tensor([[[True, False], [False, False]], [[False, False], [False, True]]])
    mixed = mix_images(mask, src, trg)
    assert torch.equal(mixed[:, 0], torch.where(mask, 0.9, 0.1))
    labels = torch.tensor([[[2, 0], [0, 0]], [[1, 1], [1, 0]]])
    teacher = torch.randn(2, 3, 2, 2)
    for dtype in (torch.float32, torch.float16):
        target = mix_teacher_logits(mask, labels, teacher.to(dtype)).float().softmax(1)
        assert torch.equal(target[0, :, 0, 0], torch.tensor([0.0, 0.0, 1.0]))  # y_s = 2, one-hot
        assert torch.equal(target[1, :, 1, 1], torch.tensor([1.0, 0.0, 0.0]))  # y_s = 0
        keep = ~mask.unsqueeze(1).expand_as(target)
        torch.testing.assert_close(target[keep], teacher.to(dtype).float().softmax(1)[keep])
    with pytest.raises(ValueError, match="crop_size"):
        mix_images(mask, src, torch.zeros(2, 3, 4, 4))


def test_source_items_are_paired_and_cycled():
    images = torch.arange(2).view(2, 1, 1, 1).float().expand(2, 3, 2, 2)
    labels = torch.arange(2).view(2, 1, 1).expand(2, 2, 2)
    img, lab = paired_source(images, labels, 3)
    assert img[:, 0, 0, 0].tolist() == [0, 1, 0] and lab[:, 0, 0].tolist() == [0, 1, 0]
    img, lab = paired_source(images, labels, 1)
    assert img.shape[0] == lab.shape[0] == 1


def test_unknown_mix_is_a_config_error():
    assert load_config(None, ["seg.con_mix=classmix"]).seg.con_mix == "classmix"
    with pytest.raises(ConfigError, match="seg.con_mix"):
        load_config(None, ["seg.con_mix=cutmix"])


def test_option_at_its_default_leaves_phase_fingerprints_unchanged():
    # the fingerprint of earlier versions: every field but the two added later
    seg = SegTrainConfig()
    added = {f.name for f in dataclasses.fields(seg) if f.metadata == SINCE_ADDED}
    assert {"con_mix", "con_align_prior"} <= added
    never = {f.name for f in dataclasses.fields(seg) if f.metadata == NOT_A_RESULT}  # logging
    before = {f.name: getattr(seg, f.name) for f in dataclasses.fields(seg) if f.name not in added | never}
    assert fingerprint(seg) == fingerprint(before)
    assert fingerprint(dataclasses.replace(seg, con_mix="classmix")) != fingerprint(seg)
    assert fingerprint(dataclasses.replace(seg, con_align_prior="start")) != fingerprint(seg)
