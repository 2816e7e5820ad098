"""Losses on hand-computed tensors (CE, SCE, Eq. 12), EMA maths, schedules, perturbation."""

import math

import pytest
import torch
import torch.nn.functional as F

from sci2i.losses.consistency import consistency_loss
from sci2i.losses.segmentation import (
    cross_entropy,
    reverse_cross_entropy,
    source_cross_entropy,
    symmetric_cross_entropy,
)
from sci2i.train.ema import ema_update, make_ema
from sci2i.train.perturb import Perturbation
from sci2i.train.schedules import ema_decay_at, exponential_lr, lambda_con_at, linear_ramp


def _two_pixels():
    # Two pixels, three classes. Pixel 0: logits (0, ln 2, ln 3) -> p = (1/6, 2/6, 3/6).
    # Pixel 1: logits (0, 0, 0) -> p = (1/3, 1/3, 1/3).
    logits = torch.tensor([[0.0, 0.0], [math.log(2), 0.0], [math.log(3), 0.0]]).view(1, 3, 1, 2)
    return logits


def test_cross_entropy_hand_computed_and_ignore():
    logits = _two_pixels()
    target = torch.tensor([[[2, 0]]])
    expected = (-math.log(3 / 6) - math.log(1 / 3)) / 2
    assert cross_entropy(logits, target).item() == pytest.approx(expected, rel=1e-6)
    ignored = torch.tensor([[[2, 255]]])
    assert cross_entropy(logits, ignored).item() == pytest.approx(-math.log(0.5), rel=1e-6)


def test_all_ignored_gives_zero_not_nan_and_keeps_graph():
    logits = _two_pixels().requires_grad_(True)
    target = torch.full((1, 1, 2), 255)
    for fn in (cross_entropy, symmetric_cross_entropy):
        loss = fn(logits, target)
        assert loss.item() == 0.0
        loss.backward()


def test_symmetric_cross_entropy_hand_computed():
    logits = _two_pixels()
    target = torch.tensor([[[1, 255]]])  # only pixel 0, label 1: p_y = 1/3
    ce = -math.log(1 / 3)
    rce = 4.0 * (1 - 1 / 3)  # -Σ_k p_k log q_k, log 0 := -4, log 1 = 0
    assert reverse_cross_entropy(logits, target).item() == pytest.approx(rce, rel=1e-6)
    assert symmetric_cross_entropy(logits, target).item() == pytest.approx(0.1 * ce + 1.0 * rce, rel=1e-6)
    assert symmetric_cross_entropy(logits, target, alpha=2.0, beta=0.5).item() == pytest.approx(
        2.0 * ce + 0.5 * rce, rel=1e-6)


def test_rce_is_bounded():
    logits = torch.tensor([100.0, -100.0, 0.0]).view(1, 3, 1, 1)
    assert reverse_cross_entropy(logits, torch.tensor([[[1]]])).item() == pytest.approx(4.0)


def test_consistency_loss_hand_computed_and_teacher_detached():
    teacher = _two_pixels()
    student = torch.zeros(1, 3, 1, 2, requires_grad=True)  # uniform: (1/3, 1/3, 1/3)
    # pixel 0: (1/6-1/3)² + (2/6-1/3)² + (3/6-1/3)² = 1/36 + 0 + 1/36; pixel 1: 0.
    expected = (2 / 36 + 0.0) / 2
    teacher_leaf = teacher.clone().requires_grad_(True)
    loss = consistency_loss(student, teacher_leaf)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert teacher_leaf.grad is None and student.grad is not None


def test_ema_update_exact_for_parameters_and_buffers():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = make_ema(model)
    assert all(not p.requires_grad for p in ema.parameters())
    with torch.no_grad():
        for p in ema.parameters():
            p.fill_(1.0)
        for p in model.parameters():
            p.fill_(3.0)
        model[1].running_mean.fill_(7.0)
        model[1].num_batches_tracked.fill_(5)
    ema_update(ema, model, decay=0.75)
    for p in ema.parameters():  # 0.75·1 + 0.25·3 = 1.5
        torch.testing.assert_close(p, torch.full_like(p, 1.5))
    torch.testing.assert_close(ema[1].running_mean, torch.full((2,), 7.0))
    assert int(ema[1].num_batches_tracked) == 5
    for p in model.parameters():  # the model itself is untouched
        torch.testing.assert_close(p, torch.full_like(p, 3.0))
    ema_update(ema, model, decay=1.0)  # decay 1 keeps the EMA
    torch.testing.assert_close(ema[0].weight, torch.full((2, 2), 1.5))
    ema_update(ema, model, decay=0.0)  # decay 0 copies
    torch.testing.assert_close(ema[0].weight, torch.full((2, 2), 3.0))


def test_lambda_con_schedule():
    assert [lambda_con_at(s, 3, 10.0) for s in range(5)] == [0, 0, 0, 10.0, 10.0]
    assert lambda_con_at(0, 0, 2.0) == 2.0


def test_exponential_lr_and_linear_ramp():
    assert exponential_lr(0, 1e-3, 0.5) == pytest.approx(1e-3)
    assert exponential_lr(3, 1e-3, 0.5) == pytest.approx(1.25e-4)
    ramp = [linear_ramp(s, 2, 6, 0.3) for s in range(8)]
    assert ramp == pytest.approx([0, 0, 0, 0.075, 0.15, 0.225, 0.3, 0.3])
    assert linear_ramp(5, 5, 5, 1.0) == 1.0 and linear_ramp(4, 5, 5, 1.0) == 0.0


def test_ema_decay_warmup():
    assert ema_decay_at(0, 0.999) == 0.0  # first update copies the student
    assert ema_decay_at(9, 0.999) == pytest.approx(0.9)
    assert ema_decay_at(10**6, 0.999) == 0.999
    assert ema_decay_at(0, 0.999, warmup=False) == 0.999


def test_perturbation_identity_and_range():
    x = torch.rand(2, 3, 16, 20)
    torch.testing.assert_close(Perturbation(0.0, (0.0, 0.0), 0.0)(x), x)
    torch.manual_seed(0)
    y = Perturbation()(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert (y - x).abs().mean() > 0.01
    # photometric only: a constant image stays spatially constant without noise.
    c = torch.full((1, 3, 16, 16), 0.5)
    z = Perturbation(0.4, (0.5, 1.5), 0.0)(c)
    assert (z - z[..., :1, :1]).abs().max() < 1e-5


def test_con_threshold_keeps_only_confident_teacher_pixels():
    from sci2i.losses.consistency import confident_pixels
    from sci2i.train.mean_teacher import mean_teacher_objective

    # pixel 0: teacher sure of class 0 (p ≈ 0.98); pixel 1: teacher undecided (0.5 / 0.5)
    teacher = torch.tensor([[4.0, 0.0], [0.0, 0.0]]).view(1, 2, 1, 2)
    student = torch.tensor([[0.0, 1.0], [0.0, -1.0]]).view(1, 2, 1, 2)
    mask = confident_pixels(teacher, 0.9)
    assert mask.tolist() == [[[True, False]]]
    per_pixel = (teacher.softmax(1) - student.softmax(1)).pow(2).sum(1)
    _, parts = mean_teacher_objective(None, None, student, teacher, None, 0.0, 1.0, 0.0, con_threshold=0.9)
    assert parts["con"].item() == pytest.approx(per_pixel[0, 0, 0].item())
    _, every = mean_teacher_objective(None, None, student, teacher, None, 0.0, 1.0, 0.0)
    assert every["con"].item() == pytest.approx(per_pixel.mean().item())
    # no confident pixel at all: the term is 0, not NaN
    _, none = mean_teacher_objective(None, None, student, teacher, None, 0.0, 1.0, 0.0, con_threshold=0.99)
    assert none["con"].item() == 0.0


def test_class_balanced_consistency_weighs_each_teacher_class_equally():
    from sci2i.losses.consistency import class_balanced_consistency_loss

    # teacher: class 0 on three pixels, class 1 on one; the student disagrees only on the last
    teacher = torch.tensor([[3.0, 3.0, 3.0, -3.0], [-3.0, -3.0, -3.0, 3.0]]).view(1, 2, 1, 4)
    student = teacher.clone()
    student[0, :, 0, 3] = 0.0
    d = (teacher.softmax(1) - student.softmax(1)).pow(2).sum(1).flatten()
    assert d[:3].abs().max().item() == 0.0 and d[3].item() > 0
    balanced = class_balanced_consistency_loss(student, teacher)
    assert balanced.item() == pytest.approx(d[3].item() / 2)  # mean of (0 for class 0, d for class 1)
    assert consistency_loss(student, teacher).item() == pytest.approx(d[3].item() / 4)
    # a mask that removes the class-1 pixel leaves only class 0: loss 0
    valid = torch.tensor([[[True, True, True, False]]])
    assert class_balanced_consistency_loss(student, teacher, valid).item() == 0.0


def test_ce_consistency_is_student_cross_entropy_at_teacher_argmax():
    from sci2i.losses.consistency import consistency_loss

    torch.manual_seed(0)
    student = torch.randn(2, 5, 3, 4, requires_grad=True)
    teacher = torch.randn(2, 5, 3, 4)
    loss = consistency_loss(student, teacher, kind="ce")
    expected = F.cross_entropy(student, teacher.argmax(1))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    valid = teacher.softmax(1).amax(1) >= 0.4
    masked = consistency_loss(student, teacher, valid, kind="ce")
    per_pixel = F.cross_entropy(student, teacher.argmax(1), reduction="none")
    assert masked.item() == pytest.approx(per_pixel[valid].mean().item(), rel=1e-6)
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="kind"):
        consistency_loss(student, teacher, kind="kl")


def test_unknown_consistency_loss_is_a_config_error():
    from sci2i.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="seg.con_loss"):
        load_config(None, ["seg.con_loss=kl"])


def _eq11_batch():
    """x_s: 1 valid pixel of 4, CE ln 2 (logits 0, 0); G(x_s): 4 valid pixels, CE ln(4/3) each
    (logits ln 3, 0 at label 0: p = 3/4)."""
    logits = torch.zeros(2, 2, 2, 2)
    logits[1, 0] = math.log(3)
    target = torch.tensor([[[0, 255], [255, 255]], [[0, 0], [0, 0]]])
    return logits, target


def test_eq11_is_the_sum_of_per_set_means():
    logits, target = _eq11_batch()
    eq11 = math.log(2) + math.log(4 / 3)  # 0.98083: CE(F_S(x_s), y_s) + CE(F_S(G(x_s)), y_s)
    pooled = (math.log(2) + 4 * math.log(4 / 3)) / 5  # 0.36883: one CE over the 5 pixels
    got = source_cross_entropy(logits, target, set_sizes=(1, 1), num_sets=2)
    assert got.item() == pytest.approx(eq11, rel=1e-6)
    assert cross_entropy(logits, target).item() == pytest.approx(pooled, rel=1e-6)
    # phase (a): one set, the plain CE
    assert source_cross_entropy(logits[:1], target[:1]).item() == pytest.approx(math.log(2), rel=1e-6)
    # a step holding only x_s (odd batch, alternating split) stands for both sets
    assert source_cross_entropy(logits[:1], target[:1], (1, 0), 2).item() == pytest.approx(2 * math.log(2), rel=1e-6)
    with pytest.raises(ValueError, match="do not split"):
        source_cross_entropy(logits, target, (1, 2))


def test_mean_teacher_objective_computes_eq11_per_set():
    from sci2i.train.mean_teacher import mean_teacher_objective

    logits, target = _eq11_batch()
    total, parts = mean_teacher_objective(logits, target, None, None, None, 1.0, 0.0, 0.0,
                                          src_set_sizes=(1, 1), num_src_sets=2)
    assert parts["seg_src"].item() == pytest.approx(math.log(2) + math.log(4 / 3), rel=1e-6)
    torch.testing.assert_close(total, parts["seg_src"])


def test_source_set_count_per_phase(tmp_path):
    from sci2i.config import load_config
    from sci2i.train.mean_teacher import source_set_count

    assert source_set_count(load_config(None, [])) == 1  # phase (a): x_s
    assert source_set_count(load_config(None, [f"seg.translated_root={tmp_path}"])) == 2  # (c)
    only_translated = [f"seg.translated_root={tmp_path}", "seg.translated_fraction=1"]
    assert source_set_count(load_config(None, only_translated)) == 1
    oracle = ["seg.lambda_src=0", "seg.lambda_con=0", "seg.lambda_trg_sup=1"]
    assert source_set_count(load_config(None, oracle)) == 0
