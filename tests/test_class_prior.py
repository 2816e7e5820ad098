"""Distribution alignment of the teacher target (seg.con_align, sci2i.train.class_prior)."""

import torch

from sci2i.train.class_prior import MOMENTUM, ClassPrior


def test_source_prior_counts_labels_and_skips_ignore():
    cp = ClassPrior(3)
    assert torch.allclose(cp.source_prior, torch.full((3,), 1 / 3))  # nothing seen yet
    cp.observe_source(torch.tensor([[[0, 0, 1, 255], [2, 2, 2, 0]]]))
    assert torch.allclose(cp.source_prior, torch.tensor([3, 1, 3]) / 7.0)
    cp.observe_source(torch.tensor([[[1, 1, 1, 1]]]))
    assert torch.allclose(cp.source_prior, torch.tensor([3, 5, 3]) / 11.0)


def test_align_is_teacher_times_prior_over_running_mean():
    torch.manual_seed(0)
    cp = ClassPrior(4)
    cp.observe_source(torch.tensor([[[0, 1, 2, 3]]]))  # uniform source prior
    first = torch.randn(2, 4, 5, 5)
    cp.align(first)
    assert torch.allclose(cp.teacher_mean, first.softmax(1).mean((0, 2, 3)))  # first batch sets p̃
    second = torch.randn(2, 4, 5, 5)
    aligned = cp.align(second)
    p_tilde = MOMENTUM * first.softmax(1).mean((0, 2, 3)) + (1 - MOMENTUM) * second.softmax(1).mean((0, 2, 3))
    assert torch.allclose(cp.teacher_mean, p_tilde, atol=1e-6)
    expected = second.softmax(1) * (0.25 / p_tilde).view(1, -1, 1, 1)
    expected = expected / expected.sum(1, keepdim=True)
    assert torch.allclose(aligned.softmax(1), expected, atol=1e-5)


def test_align_raises_a_class_the_teacher_underpredicts():
    cp = ClassPrior(2)
    cp.observe_source(torch.tensor([[[0, 1]]]))  # source: half class 0, half class 1
    logits = torch.zeros(1, 2, 4, 4)
    logits[:, 0] = 2.0  # the teacher favours class 0 everywhere (p ≈ 0.88)
    aligned = cp.align(logits).softmax(1).mean((0, 2, 3))
    assert torch.allclose(aligned, torch.tensor([0.5, 0.5]), atol=1e-5)


def test_state_round_trip_continues_identically():
    torch.manual_seed(1)
    a, b = ClassPrior(3), ClassPrior(3)
    a.observe_source(torch.randint(0, 3, (2, 4, 4)))
    a.align(torch.randn(1, 3, 4, 4))
    b.load_state_dict({k: v.clone() for k, v in a.state_dict().items()})
    x = torch.randn(1, 3, 4, 4)
    assert torch.equal(a.align(x), b.align(x))


def test_start_prior_keeps_the_teachers_initial_target_shares():
    from sci2i.train.class_prior import START_BATCHES

    cp = ClassPrior(2, prior="start")
    cp.observe_source(torch.tensor([[[1, 1, 1, 1]]]))  # the source prior would favour class 1
    early = torch.zeros(1, 2, 4, 4)
    early[:, 0] = 2.0  # the teacher starts with class 0 at p ≈ 0.88
    first = cp.align(early)
    torch.testing.assert_close(first, early)  # π = p̃ = this batch: no shift yet
    for _ in range(START_BATCHES - 1):
        cp.align(early)
    torch.testing.assert_close(cp.start_prior, early.softmax(1).mean((0, 2, 3)))
    drifted = torch.zeros(1, 2, 4, 4)
    drifted[:, 0] = 4.0  # later the teacher drifts further towards class 0
    for _ in range(800):  # p̃ forgets the early batches (momentum 0.99)
        aligned = cp.align(drifted)
    # π is frozen at the start's shares (not the source's), so alignment undoes the drift
    torch.testing.assert_close(cp.start_prior, early.softmax(1).mean((0, 2, 3)))
    torch.testing.assert_close(aligned.softmax(1).mean((0, 2, 3)), early.softmax(1).mean((0, 2, 3)),
                               atol=1e-2, rtol=0)
    state = cp.state_dict()
    restored = ClassPrior(2, prior="start")
    restored.load_state_dict({k: v.clone() for k, v in state.items()})
    assert torch.equal(restored.align(drifted), cp.align(drifted))
    legacy = ClassPrior(2)
    legacy.load_state_dict({k: v for k, v in state.items() if k != "start_sum"})  # older checkpoints


def test_unknown_align_prior_is_a_config_error():
    import pytest

    from sci2i.config import ConfigError, load_config

    assert load_config(None, ["seg.con_align_prior=start"]).seg.con_align_prior == "start"
    with pytest.raises(ConfigError, match="seg.con_align_prior"):
        load_config(None, ["seg.con_align_prior=target"])


def test_final_phase_alignment_prior_applies_only_with_a_consistency_loss():
    import pytest

    from sci2i.config import ConfigError, load_config
    from sci2i.pipeline.runner import final_config, warmup_config

    cfg = load_config(None, ["seg.lambda_con=1", "seg.con_align=true",
                             "pipeline.final_con_align_prior=start"])
    assert final_config(cfg, "tr").seg.con_align_prior == "start"
    assert warmup_config(cfg).seg.con_align_prior == "source"  # phase (a) keeps seg's
    # +I2I (no consistency in phase c): the prior would act on nothing, so the phase config,
    # and with it the cached phase, is the one of a run without the option
    no_con = load_config(None, ["seg.lambda_con=1", "seg.con_align=true",
                                "pipeline.final_con_align_prior=start", "pipeline.final_lambda_con=0"])
    plain = load_config(None, ["seg.lambda_con=1", "seg.con_align=true", "pipeline.final_lambda_con=0"])
    assert final_config(no_con, "tr").seg == final_config(plain, "tr").seg
    assert final_config(load_config(None, ["seg.lambda_con=1"]), "tr").seg.con_align_prior == "source"
    with pytest.raises(ConfigError, match="pipeline.final_con_align_prior.*null, source, start"):
        load_config(None, ["pipeline.final_con_align_prior=target"])
