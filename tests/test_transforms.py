"""Training and evaluation transforms keep images and labels aligned (docs/METHOD.md, "Data")."""

import numpy as np
import pytest
import torch

from sci2i.data.transforms import EvalTransform, TrainTransform

W, H = 64, 32


def _coordinate_pair():
    """Image whose R channel is 4·x and G is 8·y; labels that are x and y themselves."""
    ys, xs = np.mgrid[0:H, 0:W]
    image = np.stack([4 * xs, 8 * ys, np.zeros_like(xs)], axis=-1).astype(np.uint8)
    return image, xs.astype(np.uint8), ys.astype(np.uint8)


@pytest.mark.parametrize("long_side,crop", [(128, 40), (64, 24), (32, 12), (96, 48)])
@pytest.mark.parametrize("seed", range(6))
def test_train_transform_keeps_image_and_label_aligned(long_side, crop, seed):
    image, label_x, label_y = _coordinate_pair()
    t = TrainTransform(long_side, crop, flip=True)
    img_x, lab_x = t(image, label_x, rng=np.random.default_rng(seed))
    img_y, lab_y = t(image, label_y, rng=np.random.default_rng(seed))
    np.testing.assert_array_equal(img_x, img_y)  # same rng -> same geometry
    assert img_x.shape == (crop, crop, 3) and lab_x.shape == (crop, crop)
    # Where the label is valid, the image's encoded coordinate matches the label's to within
    # the resampling error (< 1 source pixel); a one-pixel shift or a missed flip breaks it.
    valid = lab_x != 255
    assert valid.mean() > 0.3
    x_from_image = img_x[..., 0].astype(float) / 4
    y_from_image = img_x[..., 1].astype(float) / 8
    assert np.abs(x_from_image - lab_x)[valid].max() <= 0.75
    assert np.abs(y_from_image - lab_y)[valid].max() <= 0.75


def test_flip_happens_and_is_applied_to_both():
    image, label_x, _ = _coordinate_pair()
    t = TrainTransform(64, 32, flip=True)
    flipped = 0
    for seed in range(20):
        img, lab = t(image, label_x, rng=np.random.default_rng(seed))
        flipped += int(lab[0, 0] > lab[0, -1])  # x decreases left to right after a flip
    assert 3 <= flipped <= 17
    no_flip = TrainTransform(64, 32, flip=False)
    assert all(no_flip(image, label_x, rng=np.random.default_rng(s))[1][0, 0] < 32 + 32 for s in range(5))
    assert all(
        no_flip(image, label_x, rng=np.random.default_rng(s))[1][0, 0]
        < no_flip(image, label_x, rng=np.random.default_rng(s))[1][0, -1]
        for s in range(5)
    )


def test_labels_use_nearest_neighbour_only():
    rng = np.random.default_rng(0)
    label = rng.choice(np.array([0, 7, 13, 255], dtype=np.uint8), size=(H, W))
    image = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    for long_side in (40, 64, 100, 150):
        _, out = TrainTransform(long_side, 16, flip=True)(image, label, rng=rng)
        assert set(np.unique(out).tolist()) <= {0, 7, 13, 255}


def test_short_side_smaller_than_crop_is_padded_with_ignore():
    image, label_x, _ = _coordinate_pair()
    img, lab = TrainTransform(64, 48, flip=False)(image, label_x, rng=np.random.default_rng(0))
    assert img.shape == (48, 48, 3) and lab.shape == (48, 48)
    assert (lab[32:] == 255).all() and (img[32:] == 0).all()
    assert (lab[:32] != 255).all()


def test_image_without_label():
    image, _, _ = _coordinate_pair()
    img, lab = TrainTransform(64, 16, flip=True)(image, None, rng=np.random.default_rng(0))
    assert lab is None and img.shape == (16, 16, 3) and img.dtype == np.uint8


def test_default_rng_follows_torch_seed():
    image, label_x, _ = _coordinate_pair()
    t = TrainTransform(128, 20, flip=True)
    torch.manual_seed(123)
    a = [t(image, label_x)[1] for _ in range(3)]
    torch.manual_seed(123)
    b = [t(image, label_x)[1] for _ in range(3)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(a[0], x) for x in a[1:])  # successive calls differ


def test_eval_transform_rescales_image_and_keeps_full_resolution_label():
    image, label_x, _ = _coordinate_pair()
    img, lab = EvalTransform(32)(image, label_x)
    assert img.shape == (16, 32, 3)
    assert lab is label_x  # untouched, full resolution
    img, _ = EvalTransform(128)(image, None)
    assert img.shape == (64, 128, 3)
    # area-averaged downscale keeps the encoded x coordinate (mean of 2 pixels)
    img, _ = EvalTransform(32)(image, None)
    np.testing.assert_allclose(img[0, :, 0] / 4, np.arange(32) * 2 + 0.5, atol=0.3)


def test_mismatched_pair_is_rejected():
    image, label_x, _ = _coordinate_pair()
    with pytest.raises(ValueError, match="does not match"):
        TrainTransform(64, 16, flip=False)(image, label_x[:, :-1])
