"""KID (sci2i.eval.kid): the estimator on hand-computed values, subsets, features, the I2I monitor."""

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from sci2i.eval.kid import (
    KIDFeatures,
    KIDMonitor,
    image_features,
    kid,
    mmd2_unbiased,
    polynomial_kernel,
    spread_indices,
    translation_kid,
)


def test_polynomial_kernel_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    # d = 2: (x·y / 2 + 1)^3
    assert torch.allclose(polynomial_kernel(x, x), torch.tensor([[3.375, 1.0], [1.0, 3.375]]))
    assert torch.allclose(polynomial_kernel(x, y), torch.tensor([[3.375, 1.0], [3.375, 1.0]]))


def test_unbiased_mmd2_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    # within x: k(x1, x2) = 1 twice / (2·1) = 1; within y: k(y1, y2) = (0 + 1)^3 = 1 -> 1;
    # across: (3.375 + 1 + 3.375 + 1) / 4 = 2.1875; MMD² = 1 + 1 - 2·2.1875
    assert mmd2_unbiased(x, y) == pytest.approx(-2.375)
    # the diagonal k(x_i, x_i) is left out: a biased estimate would add (3.375 - 1)/2 per set
    assert mmd2_unbiased(x, x) == pytest.approx(1 + 1 - 2 * (3.375 * 2 + 2) / 4)


def test_unbiased_mmd2_matches_the_sums_written_out_for_sets_of_different_sizes():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 3, generator=g), torch.randn(4, 3, generator=g) + 0.5

    def k(a, b):
        return (float(a @ b) / 3 + 1) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        mmd2_unbiased(x[:1], y)


def test_kid_over_subsets():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(30, 8, generator=g), torch.randn(20, 8, generator=g)
    # subsets as large as the smaller set: every subset of y is y itself, x's differ
    out = kid(x, y, subset_size=1000, num_subsets=7, seed=3)
    assert out["subset_size"] == 20 and out["num_subsets"] == 7 and (out["n_x"], out["n_y"]) == (30, 20)
    gen = torch.Generator().manual_seed(3)
    values = []
    for _ in range(7):
        ix, iy = torch.randperm(30, generator=gen)[:20], torch.randperm(20, generator=gen)[:20]
        values.append(mmd2_unbiased(x[ix], y[iy]))
    assert out["kid"] == pytest.approx(np.mean(values)) and out["kid_std"] == pytest.approx(np.std(values))
    assert out["kid_std"] > 0
    # sets of the subset's size: every subset is the whole set, one estimate without a spread
    same = kid(x[:20], y, subset_size=20, num_subsets=3)
    assert same["num_subsets"] == 1 and same["kid_std"] is None
    assert same["kid"] == pytest.approx(mmd2_unbiased(x[:20], y))


def test_kid_separates_shifted_distributions_and_draws_no_global_random_numbers():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(200, 16, generator=g), torch.randn(200, 16, generator=g)
    state = torch.get_rng_state()
    alike, shifted = kid(a, b, subset_size=100, num_subsets=20), kid(a, b + 1.0, subset_size=100, num_subsets=20)
    assert torch.equal(torch.get_rng_state(), state)  # safe inside a training loop
    assert abs(alike["kid"]) < 0.05 < shifted["kid"]


def test_spread_indices():
    assert spread_indices(5, 0) == [0, 1, 2, 3, 4] and spread_indices(5, 9) == [0, 1, 2, 3, 4]
    assert spread_indices(10, 3) == [0, 4, 9]  # 0, 4.5 -> 4 (round half to even), 9


def test_features_are_frozen_pooled_vectors():
    net = KIDFeatures("efficientnet_lite0", "package")
    assert net.dim == 1280 and not any(p.requires_grad for p in net.parameters())
    images = [torch.rand(3, 32, 64), torch.rand(3, 32, 64), torch.rand(3, 64, 32)]  # two sizes: two batches
    feats = image_features(net, images, batch_size=16)
    assert feats.shape == (3, 1280)
    assert torch.allclose(feats[2], net(images[2][None])[0], atol=1e-5)
    with pytest.raises(ValueError):
        KIDFeatures("resnet101", "")


def _folder(root, name, colours, size=(48, 32)):
    d = root / name
    d.mkdir()
    for i, c in enumerate(colours):
        Image.new("RGB", size, tuple(int(v) for v in c)).save(d / f"img_{i:02d}.png")
    return d


def test_translation_kid_pairs_sources_with_their_own_translations(tmp_path):
    from sci2i.data.datasets import ImageFolderDataset

    rng = np.random.default_rng(0)
    grey = rng.integers(90, 110, (6, 1)).repeat(3, axis=1)
    green = np.stack([rng.integers(0, 30, 6), rng.integers(150, 250, 6), rng.integers(0, 30, 6)], 1)
    src = _folder(tmp_path, "src", grey)
    fake = _folder(tmp_path, "fake", green[:5])  # img_05 was not translated: left out of both sets
    trg = _folder(tmp_path, "trg", green[::-1])
    net = KIDFeatures("efficientnet_lite0", "package")
    out = translation_kid(ImageFolderDataset(src), ImageFolderDataset(fake), ImageFolderDataset(trg), net,
                          max_images=100, long_side=32)
    assert out["source_vs_target"]["n_x"] == out["translated_vs_target"]["n_x"] == 5
    assert out["source_vs_target"]["n_y"] == 6
    # green translations are closer to the green target than the grey sources
    assert out["translated_vs_target"]["kid"] < out["source_vs_target"]["kid"]


def test_monitor_with_the_identity_translation_scores_the_source():
    g = torch.Generator().manual_seed(0)
    src = [torch.rand(3, 32, 32, generator=g) * 0.5 for _ in range(6)]
    trg = [torch.rand(3, 32, 32, generator=g) for _ in range(5)]
    mon = KIDMonitor(src, trg, KIDFeatures("efficientnet_lite0", "package"))
    same = mon(lambda x: x)
    assert same["KID/translated_vs_target"] == pytest.approx(same["KID/source_vs_target"])
    other = mon(lambda x: 1 - x)
    assert other["KID/translated_vs_target"] != pytest.approx(same["KID/source_vs_target"])


@pytest.mark.slow
def test_kid_over_the_i2i_steps_leaves_the_training_unchanged(tmp_path):
    from fixtures import write_cityscapes, write_gta5

    from sci2i.config import load_config
    from sci2i.train.i2i import train_i2i
    from sci2i.utils.checkpoint import load_weights
    from sci2i.utils.rundir import read_metrics

    write_gta5(tmp_path / "gta5", n=4, size=(64, 32))
    write_cityscapes(tmp_path / "cs", splits=("train",), n_per_split=3, size=(64, 32))
    base = [f"data.source_root={tmp_path / 'gta5'}", f"data.target_root={tmp_path / 'cs'}",
            "data.long_side=64", "data.crop_size=32", "data.eval_long_side=64", "data.num_workers=0",
            "generator.channels=[8,8,16,16]", "generator.latent_dim=8", "generator.style_dim=8",
            "generator.mapping_layers=2", "discriminator.trunk=efficientnet_lite0",
            "discriminator.trunk_weights=package", "discriminator.channels=16", "perf.device=cpu",
            "i2i.pseudo_labels=online", "i2i.steps=3", "i2i.sample_every=2", "i2i.log_every=1",
            "run.deterministic=true"]
    plain = train_i2i(load_config(None, base), tmp_path / "plain", resume=False, progress=False)
    watched = train_i2i(load_config(None, base + ["i2i.kid_images=3"]), tmp_path / "kid", resume=False,
                        progress=False)
    a, b = load_weights(plain["generator"]), load_weights(watched["generator"])
    assert all(torch.equal(a[k], b[k]) for k in a)  # KID draws none of the training's random numbers
    kid_rows = [m for m in read_metrics(tmp_path / "kid") if "KID/translated_vs_target" in m]
    assert [m["step"] for m in kid_rows] == [2, 3]
    assert kid_rows[0]["KID/source_vs_target"] == kid_rows[1]["KID/source_vs_target"]
    assert not [m for m in read_metrics(tmp_path / "plain") if "KID/translated_vs_target" in m]
