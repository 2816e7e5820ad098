"""The control sets of Table 4 (``seg.second_source``): x_s photometrically augmented
(:mod:`sci2i.train.augment`) or x_s again, in place of G(x_s) in Eq. 11."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fixtures import tiny_seg_overrides, write_cityscapes, write_gta5

from sci2i.config import ConfigError, load_config
from sci2i.train.augment import PlainAugmentation, lower_contrast, random_greyscale
from sci2i.train.mean_teacher import MeanTeacherTrainer, batch_plan, source_set_count, train_segmentation
from sci2i.utils.checkpoint import load_state
from sci2i.utils.rundir import RunDir
from sci2i.utils.runtime import seed_everything


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_gta5(root / "gta", n=6, size=(64, 32), seed=1)
    write_cityscapes(root / "cs", n_per_split=3, size=(64, 32), seed=3)
    return root


def _cfg(data: Path, *extra: str):
    return load_config(None, [*tiny_seg_overrides(data), "seg.lambda_con=0", *extra])


# ----------------------------------------------------------------------------- the augmentation
def test_plain_augmentation_is_photometric_random_per_image_and_seeded():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 16, 16)
    aug = PlainAugmentation()
    torch.manual_seed(1)
    a = aug(x)
    torch.manual_seed(1)
    assert torch.equal(aug(x), a)  # torch's global RNG (seeded, saved in checkpoints)
    assert a.shape == x.shape and a.dtype == x.dtype and 0 <= a.min() and a.max() <= 1
    assert not torch.allclose(a, x, atol=1e-2)
    per_image = [(a[i] - x[i]).abs().mean() for i in range(6)]
    assert len({round(float(v), 4) for v in per_image}) == 6  # each image its own parameters
    # switched off it is the identity
    off = PlainAugmentation(grey_p=0, jitter=0, contrast=(1.0, 1.0), blur_sigma=(0.0, 0.0), noise_std=0)
    assert torch.equal(off(x), x)


def test_greyscale_and_contrast_by_hand():
    x = torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1).expand(2, 3, 1, 2).clone()
    grey = random_greyscale(x, p=1.0)
    luma = 0.299 * 1.0 + 0.587 * 0.5
    assert torch.allclose(grey, torch.full_like(x, luma))
    assert torch.equal(random_greyscale(x, p=0.0), x)
    img = torch.tensor([[0.2, 0.6]]).view(1, 1, 1, 2).expand(1, 3, 1, 2).clone()  # grey pixels
    half = lower_contrast(img, 0.5, 0.5)  # around the mean 0.4: 0.2 -> 0.3, 0.6 -> 0.5
    assert torch.allclose(half[0, 0, 0], torch.tensor([0.3, 0.5]))


# ----------------------------------------------------------------------------- in Eq. 11
@pytest.mark.parametrize("second", ["plain_aug", "source"])
def test_control_sets_take_the_place_of_g_xs_in_the_batch_plan(second, tmp_path):
    cfg = load_config(None, [f"seg.second_source={second}", "seg.batch_size=2"])
    assert (batch_plan(0, cfg).src, batch_plan(0, cfg).translated) == (1, 1)
    assert source_set_count(cfg) == 2
    # the default without translated_root is phase (a): x_s alone
    plain = load_config(None, ["seg.batch_size=2"])
    assert (batch_plan(0, plain).src, batch_plan(0, plain).translated, source_set_count(plain)) == (2, 0, 1)
    with pytest.raises(ConfigError, match="replaces G"):
        from sci2i.train.mean_teacher import check_config

        check_config(load_config(None, [f"seg.second_source={second}", f"seg.translated_root={tmp_path}"]))
    with pytest.raises(ConfigError, match="second_source"):
        load_config(None, ["seg.second_source=gan"])


@pytest.mark.parametrize("second", ["plain_aug", "source"])
def test_control_step_draws_the_second_set_from_the_source(second, data, tmp_path, monkeypatch):
    import sci2i.train.mean_teacher as mt

    sizes, fed = [], []
    real_ce = mt.source_cross_entropy
    monkeypatch.setattr(mt, "source_cross_entropy",
                        lambda logits, target, set_sizes=None, num_sets=None:
                        sizes.append((tuple(set_sizes), num_sets)) or real_ce(logits, target, set_sizes, num_sets))
    cfg = _cfg(data, "seg.steps=1", f"seg.second_source={second}")
    seed_everything(0, True)
    trainer = MeanTeacherTrainer(cfg, RunDir(cfg, tmp_path / "r"), torch.device("cpu"), progress=False)
    assert (trainer.plain_aug is not None) == (second == "plain_aug")
    second_set = trainer._datasets()["translated"]
    assert Path(second_set.files(0)[0]).is_relative_to(data / "gta")  # the source images themselves
    trainer.open_streams()
    if trainer.plain_aug is not None:
        real_aug = trainer.plain_aug
        trainer.plain_aug = lambda x: fed.append((x.clone(), real_aug(x))) or fed[-1][1]
    trainer.train_step()
    assert sizes == [((1, 1), 2)]  # Eq. 11 sums the CE of x_s and of the control set
    if second == "plain_aug":
        assert len(fed) == 1 and fed[0][0].shape == (1, 3, 32, 32)
        assert not torch.allclose(fed[0][0], fed[0][1])


def test_plain_augmentation_run_resumes_exactly(data, tmp_path):
    extra = ["seg.second_source=plain_aug", "seg.batch_size=1"]
    train_segmentation(_cfg(data, "seg.steps=4", *extra), tmp_path / "full", progress=False)
    train_segmentation(_cfg(data, "seg.steps=2", *extra), tmp_path / "split", progress=False)
    train_segmentation(_cfg(data, "seg.steps=4", *extra), tmp_path / "split", resume=True, progress=False)
    a, b = (load_state(sorted((tmp_path / r / "checkpoints").glob("step_*.pt"))[-1]) for r in ("full", "split"))
    assert a["consumed"] == b["consumed"] == {"src": 2, "translated": 2}
    for k in a["student"]:
        assert torch.equal(a["student"][k], b["student"][k]), k
