"""I2I losses (Eqs. 1-9) against values computed by hand on tiny tensors."""

import math

import pytest
import torch

from sci2i.losses.gan import (
    discriminator_classwise_gan,
    discriminator_domain_gan,
    gan_distance,
    gan_objective,
    generator_classwise_gan,
    generator_domain_gan,
    one_hot_labels,
)
from sci2i.losses.i2i import (
    class_set_ids,
    discriminator_loss,
    generator_loss,
    identity_loss,
    restrict_labels,
)
from sci2i.losses.segmentation import cross_entropy, symmetric_cross_entropy
from sci2i.models.discriminator import DiscriminatorOutput


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_gan_distance_lsgan_is_squared_error():
    a = torch.tensor([0.0, 0.5, 2.0])
    assert torch.allclose(gan_distance(a, 1.0, "lsgan"), torch.tensor([1.0, 0.25, 1.0]))
    assert torch.allclose(gan_distance(a, 0.0, "lsgan"), torch.tensor([0.0, 0.25, 4.0]))


def test_gan_distance_sgan_is_bce_with_logits():
    a = torch.tensor([0.0, 2.0, -1.0])
    # BCE(σ(a), 1) = softplus(-a); BCE(σ(a), 0) = softplus(a)
    assert torch.allclose(gan_distance(a, 1.0, "sgan"), torch.tensor([_softplus(-v) for v in (0.0, 2.0, -1.0)]))
    assert torch.allclose(gan_distance(a, 0.0, "sgan"), torch.tensor([_softplus(v) for v in (0.0, 2.0, -1.0)]))
    with pytest.raises(ValueError):
        gan_distance(a, 1.0, "wgan")


def test_one_hot_ignores_255_and_out_of_range():
    labels = torch.tensor([[[0, 2], [255, 1]]])
    oh = one_hot_labels(labels, 3)
    assert oh.shape == (1, 3, 2, 2)
    assert oh[0, :, 0, 0].tolist() == [1, 0, 0]
    assert oh[0, :, 0, 1].tolist() == [0, 0, 1]
    assert oh[0, :, 1, 0].tolist() == [0, 0, 0]  # ignore: no feedback
    assert oh[0, :, 1, 1].tolist() == [0, 1, 0]


def test_domain_gan_eqs_2_3_by_hand():
    fake = torch.tensor([[[0.5, -1.0]]])  # (N=1, H=1, W=2)
    real = torch.tensor([[[1.0, 0.0]]])
    # Eq. 2 LSGAN: (0.5-0)^2 + (1-1)^2 = 0.25 ; (-1)^2 + (0-1)^2 = 2
    assert torch.allclose(discriminator_domain_gan(fake, real, "lsgan"), torch.tensor([[[0.25, 2.0]]]))
    # Eq. 3 LSGAN: (0.5-1)^2 = 0.25 ; (-1-1)^2 = 4
    assert torch.allclose(generator_domain_gan(fake, "lsgan"), torch.tensor([[[0.25, 4.0]]]))
    # SGAN
    d = discriminator_domain_gan(fake, real, "sgan")
    assert torch.allclose(d, torch.tensor([[[_softplus(0.5) + _softplus(-1.0), _softplus(-1.0) + _softplus(0.0)]]]))
    assert torch.allclose(generator_domain_gan(fake, "sgan"), torch.tensor([[[_softplus(-0.5), _softplus(1.0)]]]))


def test_classwise_gan_masks_by_class_eqs_4_5():
    # 2 classes, 1×2 image. Source pixel 0 is class 0, pixel 1 is ignored.
    # Pseudo label: pixel 0 class 1, pixel 1 class 0.
    fake_c = torch.tensor([[[[2.0, 3.0]], [[5.0, 7.0]]]])  # (1, 2, 1, 2)
    real_c = torch.tensor([[[[0.0, 4.0]], [[-1.0, 9.0]]]])
    y_s = one_hot_labels(torch.tensor([[[0, 255]]]), 2)
    y_t = one_hot_labels(torch.tensor([[[1, 0]]]), 2)
    d = discriminator_classwise_gan(fake_c, real_c, y_s, y_t, "lsgan")
    # class 0: pixel 0 fake (2-0)^2=4 ; pixel 1: source ignored, pseudo class 0 real (4-1)^2=9
    # class 1: pixel 0 real (-1-1)^2=4 ; pixel 1: nothing
    expected_d = torch.tensor([[[[4.0, 9.0]], [[4.0, 0.0]]]])
    assert torch.allclose(d, expected_d)
    g = generator_classwise_gan(fake_c, y_s, "lsgan")
    # only class 0 at pixel 0: (2-1)^2 = 1; the ignored pixel contributes nothing
    assert torch.allclose(g, torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]]]]))


def test_gan_objective_eq_6_lambda_over_num_classes():
    domain = torch.tensor([[[1.0, 3.0]]])
    classwise = torch.tensor([[[[4.0, 9.0]], [[4.0, 0.0]]]])
    # mean_ij (dom + λ/|C| Σ_c cls) with λ=0.3, |C|=2: ((1 + .15*8) + (3 + .15*9)) / 2
    expected = ((1 + 0.15 * 8) + (3 + 0.15 * 9)) / 2
    assert gan_objective(domain, classwise, 0.3, 2).item() == pytest.approx(expected)
    # |C| is the class set's size, not the number of maps: 16 for SYNTHIA
    expected16 = ((1 + 0.3 / 16 * 8) + (3 + 0.3 / 16 * 9)) / 2
    assert gan_objective(domain, classwise, 0.3, 16).item() == pytest.approx(expected16)
    # λ_cgan = 0 (ablation "w/o class-wise GAN") leaves the domain term only
    assert gan_objective(domain, classwise, 0.0, 2).item() == pytest.approx(2.0)


def test_identity_loss_eq_8_l1_norm_per_pixel():
    x = torch.zeros(1, 3, 1, 2)
    r = torch.tensor([[[[0.1, 0.0]], [[0.2, 0.0]], [[-0.3, 0.4]]]])
    # pixel 0: 0.1+0.2+0.3 = 0.6 ; pixel 1: 0.4 ; mean 0.5
    assert identity_loss(r, x).item() == pytest.approx(0.5)


def _outputs(gan: torch.Tensor, seg: torch.Tensor) -> DiscriminatorOutput:
    return DiscriminatorOutput(gan, seg)


def test_discriminator_loss_eq_7_combines_terms():
    torch.manual_seed(0)
    fake = _outputs(torch.randn(1, 3, 2, 2), torch.randn(1, 2, 2, 2))
    real = _outputs(torch.randn(1, 3, 2, 2), torch.randn(1, 2, 2, 2))
    y_s = torch.tensor([[[0, 1], [255, 1]]])
    y_t = torch.tensor([[[1, 1], [0, 255]]])
    total, parts = discriminator_loss(fake, real, y_s, y_t, lambda_pl=0.3, lambda_cgan=0.5,
                                      num_classes=2, gan_loss="lsgan")
    seg = cross_entropy(fake.seg, y_s) + 0.3 * symmetric_cross_entropy(real.seg, y_t)
    # GAN by hand, pixel by pixel
    gan = 0.0
    for i in range(2):
        for j in range(2):
            dom = fake.gan[0, 0, i, j].item() ** 2 + (real.gan[0, 0, i, j].item() - 1) ** 2
            cls = 0.0
            for c in range(2):
                if y_s[0, i, j] == c:
                    cls += fake.gan[0, 1 + c, i, j].item() ** 2
                if y_t[0, i, j] == c:
                    cls += (real.gan[0, 1 + c, i, j].item() - 1) ** 2
            gan += dom + 0.5 / 2 * cls
    gan /= 4
    assert parts["seg"].item() == pytest.approx(seg.item(), rel=1e-5)
    assert parts["gan"].item() == pytest.approx(gan, rel=1e-5)
    assert total.item() == pytest.approx(seg.item() + gan, rel=1e-5)


def test_generator_loss_eq_9_combines_terms_and_weights():
    torch.manual_seed(1)
    fake = _outputs(torch.randn(1, 3, 2, 2), torch.randn(1, 2, 2, 2))
    y_s = torch.tensor([[[0, 1], [255, 1]]])
    recon, image = torch.rand(1, 3, 2, 2), torch.rand(1, 3, 2, 2)
    kw = dict(lambda_cgan=0.3, lambda_id=1.0, num_classes=2, gan_loss="sgan")
    total, parts = generator_loss(fake, y_s, recon, image, lambda_gseg=1.0, **kw)
    gan = 0.0
    for i in range(2):
        for j in range(2):
            dom = _softplus(-fake.gan[0, 0, i, j].item())
            c = y_s[0, i, j].item()
            cls = _softplus(-fake.gan[0, 1 + c, i, j].item()) if c != 255 else 0.0
            gan += dom + 0.3 / 2 * cls
    gan /= 4
    seg = cross_entropy(fake.seg, y_s).item()
    ident = (recon - image).abs().sum(1).mean().item()
    assert parts["gan"].item() == pytest.approx(gan, rel=1e-5)
    assert total.item() == pytest.approx(seg + gan + ident, rel=1e-5)
    # λ_gseg = 0: the "w/o L_G,seg" ablation drops the segmentation term only
    total0, _ = generator_loss(fake, y_s, recon, image, lambda_gseg=0.0, **kw)
    assert total0.item() == pytest.approx(gan + ident, rel=1e-5)


def test_lsgan_and_sgan_differ():
    fake = _outputs(torch.full((1, 3, 1, 1), 0.5), torch.zeros(1, 2, 1, 1))
    y_s = torch.tensor([[[0]]])
    args = (fake, y_s, torch.zeros(1, 3, 1, 1), torch.zeros(1, 3, 1, 1))
    kw = dict(lambda_gseg=0.0, lambda_cgan=0.0, lambda_id=0.0, num_classes=2)
    ls = generator_loss(*args, gan_loss="lsgan", **kw)[0].item()
    sg = generator_loss(*args, gan_loss="sgan", **kw)[0].item()
    assert ls == pytest.approx(0.25)
    assert sg == pytest.approx(_softplus(-0.5))


def test_synthia_class_set_restricts_labels():
    ids = class_set_ids("synthia16")
    assert len(ids) == 16 and 9 not in ids  # terrain
    labels = torch.tensor([[[9, 0, 14, 255, 16]]])  # terrain, road, truck, ignore, train
    assert restrict_labels(labels, ids).tolist() == [[[255, 0, 255, 255, 255]]]
    assert restrict_labels(labels, class_set_ids("cityscapes19")) is labels
