"""Generator G: sizes, output range, StyleGAN components, stochasticity and determinism."""

import math

import pytest
import torch

from sci2i.config.schema import GeneratorConfig
from sci2i.models.generator import Generator
from sci2i.models.stylegan_layers import (
    AdaIN,
    EqualizedConv2d,
    EqualizedConvTranspose2d,
    EqualizedLinear,
    NoiseInjection,
    PixelNorm,
)

TINY = GeneratorConfig(channels=[8, 12, 16, 24], latent_dim=8, style_dim=8, mapping_layers=2)


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(0)
    g = Generator(TINY)
    with torch.no_grad():  # non-zero noise strength so stochastic variation is visible
        for m in g.modules():
            if isinstance(m, NoiseInjection):
                m.strength.fill_(0.5)
    return g


@pytest.mark.parametrize("size", [(32, 48), (24, 8), (30, 45), (17, 9)])
def test_output_keeps_input_size_and_range(gen, size):
    x = torch.rand(2, 3, *size)
    y = gen(x)
    assert y.shape == x.shape  # multiples of 8 exactly; others padded and cropped back
    assert y.min() >= 0 and y.max() <= 1


def test_rejects_non_rgb_and_bad_z(gen):
    with pytest.raises(ValueError, match="RGB"):
        gen(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="z must be"):
        gen(torch.rand(2, 3, 16, 16), z=torch.randn(3, TINY.latent_dim))


def test_different_z_gives_different_output_fixed_z_is_deterministic(gen):
    x = torch.rand(1, 3, 16, 24)
    z1, z2 = torch.randn(TINY.latent_dim), torch.randn(TINY.latent_dim)
    a = gen(x, z1, generator=torch.Generator().manual_seed(3))
    b = gen(x, z1, generator=torch.Generator().manual_seed(3))
    c = gen(x, z2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-4


def test_noise_is_stochastic_variation_with_learned_strength(gen):
    x, z = torch.rand(1, 3, 16, 16), torch.randn(TINY.latent_dim)
    a = gen(x, z, generator=torch.Generator().manual_seed(1))
    b = gen(x, z, generator=torch.Generator().manual_seed(2))
    assert (a - b).abs().max() > 1e-4  # same z, different noise
    layer = NoiseInjection(4)
    h = torch.randn(1, 4, 5, 5)
    assert torch.equal(layer(h), h)  # strength starts at 0
    assert layer.strength.requires_grad
    assert torch.equal(NoiseInjection(4, enabled=False)(h), h)


def test_equalized_lr_stores_unit_weights_and_scales_by_he_constant():
    conv = EqualizedConv2d(64, 32, 3, padding=1)
    assert abs(conv.weight.std().item() - 1.0) < 0.05
    assert conv.scale == pytest.approx(math.sqrt(2.0 / (64 * 9)))
    x = torch.randn(4, 64, 16, 16)
    ref = torch.nn.functional.conv2d(x, conv.weight * conv.scale, padding=1)
    assert torch.allclose(conv(x), ref)
    # He init keeps the activation scale: E[y²] ≈ 2·E[x²] before the leaky-ReLU halves it.
    assert conv(x).pow(2).mean().item() == pytest.approx(2.0, rel=0.25)
    deconv = EqualizedConvTranspose2d(16, 8, 4, stride=2, padding=1)
    assert deconv.scale == pytest.approx(math.sqrt(2.0 / (16 * 4)))
    assert deconv(torch.randn(1, 16, 5, 5)).shape == (1, 8, 10, 10)
    lin = EqualizedLinear(10, 5, lr_mul=0.01)
    assert lin.weight.std().item() > 10  # stored as w / lr_mul


def test_pixelnorm_gives_unit_mean_square_per_pixel():
    x = torch.randn(2, 7, 3, 3) * 5
    y = PixelNorm()(x)
    assert torch.allclose(y.pow(2).mean(dim=1), torch.ones(2, 3, 3), atol=1e-4)


def test_adain_sets_per_channel_statistics_from_style():
    ada = AdaIN(3, style_dim=4)
    with torch.no_grad():
        ada.affine.weight.zero_()
        ada.affine.bias.copy_(torch.tensor([1.0, 0.0, -0.5, 0.2, 0.3, -0.4]))
    x = torch.randn(1, 3, 8, 8) * 4 + 2
    y = ada(x, torch.randn(1, 4))
    # scale 1 + γ = (2, 1, 0.5), bias β = (0.2, 0.3, -0.4)
    assert torch.allclose(y.mean(dim=(2, 3)), torch.tensor([[0.2, 0.3, -0.4]]), atol=1e-4)
    assert torch.allclose(y.std(dim=(2, 3), unbiased=False), torch.tensor([[2.0, 1.0, 0.5]]), atol=1e-3)


def test_adain_at_init_is_styled_as_in_stylegan():
    """At initialisation γ, β = A·w / sqrt(d) with A ~ N(0, 1) (equalised lr, bias 0): per
    channel γ ~ N(0, rms(w)²), so the style already rescales each channel (StyleGAN's
    ``x · (1 + γ) + β``); only w = 0 gives the plain instance norm."""
    torch.manual_seed(0)
    ada = AdaIN(512, style_dim=512)
    w = torch.randn(1, 512)
    w = w / w.pow(2).mean().sqrt()  # rms(w) = 1
    gamma, beta = ada.affine(w).chunk(2, dim=1)
    assert 0.9 < gamma.std().item() < 1.1 and 0.9 < beta.std().item() < 1.1
    x = torch.randn(2, 512, 4, 4) * 3 + 1
    inorm = torch.nn.functional.instance_norm(x, eps=ada.eps)
    y = ada(x, w.expand(2, -1))
    torch.testing.assert_close(y, inorm * (1 + gamma.view(1, -1, 1, 1)) + beta.view(1, -1, 1, 1))
    assert (y - inorm).abs().max() > 1.0
    torch.testing.assert_close(ada(x, torch.zeros(2, 512)), inorm)


def test_every_layer_has_learned_scale_and_bias():
    g = Generator(TINY)
    names = [n for n, _ in g.named_parameters()]
    for prefix in ["encoder.0", "encoder.3", "res_block.layers.1", "decoder.2", "to_rgb_scale_bias"]:
        assert any(n.startswith(prefix) and n.endswith("scale") for n in names), prefix
        assert any(n.startswith(prefix) and n.endswith("bias") for n in names), prefix


def test_every_generator_parameter_gets_a_gradient():
    g = Generator(TINY)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, NoiseInjection):
                m.strength.fill_(0.1)
    g(torch.rand(2, 3, 16, 16)).mean().backward()
    missing = [n for n, p in g.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
