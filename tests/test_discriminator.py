"""Discriminator D: frozen trunk, full-resolution heads, gradient routing through the trunk."""

import pytest
import torch

from sci2i.config.schema import DiscriminatorConfig
from sci2i.labels import NUM_CLASSES
from sci2i.models.discriminator import Discriminator


@pytest.fixture(scope="module", params=["vgg16", "efficientnet_lite0"])
def disc(request):
    torch.manual_seed(0)
    return Discriminator(DiscriminatorConfig(trunk=request.param, trunk_weights="", channels=16))


@pytest.mark.parametrize("size", [(32, 48), (30, 45)])
def test_heads_output_full_resolution(disc, size):
    out = disc(torch.rand(2, 3, *size))
    assert out.gan.shape == (2, 1 + NUM_CLASSES, *size)
    assert out.seg.shape == (2, NUM_CLASSES, *size)
    assert out.domain.shape == (2, *size)
    assert out.classwise.shape == (2, NUM_CLASSES, *size)


def test_three_residual_blocks(disc):
    assert len(disc.res_blocks) == 3


def test_trunk_is_frozen_but_passes_gradient_to_input(disc):
    disc.train()
    assert not disc.trunk.training  # stays in eval mode
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    out = disc(x)
    (out.gan.mean() + out.seg.mean()).backward()
    assert all(p.grad is None for p in disc.trunk.parameters())
    assert x.grad is not None and x.grad.abs().sum() > 0
    trainable = disc.trainable_parameters()
    assert trainable and all(p.grad is not None for p in trainable)
    assert not any(p is q for p in trainable for q in disc.trunk.parameters())
    disc.zero_grad(set_to_none=True)


def test_trainable_state_excludes_trunk_and_round_trips(disc):
    state = disc.trainable_state_dict()
    assert state and not any(k.startswith("trunk.") for k in state)
    disc.load_trainable_state_dict(state)
    with pytest.raises(KeyError):
        disc.load_trainable_state_dict({"nope": torch.zeros(1)})
