"""``sci2i predict``: inputs, sliding window and flip, full-resolution outputs, every checkpoint kind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sci2i.cli import main as cli_main
from sci2i.config import load_config, to_yaml
from sci2i.data.transforms import resize_image, scaled_size
from sci2i.eval.evaluator import logits_to_train_ids
from sci2i.labels import CLASS_COLORS, train_ids_to_label_ids
from sci2i.models.deeplab import DeepLabV2
from sci2i.infer.predict import (
    class_logits,
    collect_inputs,
    load_predictor,
    output_paths,
    upsample_argmax,
)
from sci2i.infer.segmenter import load_segmenter, model_meta, save_segmenter
from sci2i.utils.checkpoint import CheckpointError, save_state

EVAL_LONG_SIDE = 48


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One tiny random segmenter stored in every form the project writes."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = DeepLabV2("efficientnet_lite0", "", num_classes=19, aspp_rates=(1, 2, 3, 4), output_stride=16).eval()
    with torch.no_grad():  # larger logits than at init, so that the argmax varies over the image
        model.classifier.branches[0].weight.mul_(5)
    config = to_yaml(load_config(None, [f"data.eval_long_side={EVAL_LONG_SIDE}"]))
    teacher = save_segmenter(model, root / "seg" / "teacher.safetensors", config)
    final = root / "runs" / "toycity" / "checkpoints" / "final"  # the demo's layout
    save_segmenter(model, final / "teacher.safetensors", config)
    step = root / "seg" / "checkpoints" / "step_00000002.pt"
    save_state({"teacher": model.state_dict(), "student": model.state_dict(), "model_meta": model_meta(model),
                "config": config, "step": 2}, step)
    return {"teacher": teacher, "final": final, "step": step, "model": load_segmenter(teacher)}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Odd-sized JPEG and PNG images, RGB, grey and RGBA, one in a subfolder."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(3)
    specs = [("a.png", (37, 23), "RGB"), ("b.jpg", (50, 71), "RGB"), ("sub/c.png", (129, 64), "RGBA"),
             ("sub/d.jpeg", (61, 17), "L")]
    for name, (w, h), mode in specs:
        arr = rng.integers(0, 256, size=(h, w, {"RGB": 3, "RGBA": 4, "L": 1}[mode]), dtype=np.uint8)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr.squeeze(-1) if mode == "L" else arr, mode).save(root / name)
    return root


def _expected_sizes(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).with_suffix("").as_posix(): Image.open(p).size[::-1]
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_predict_folder_of_odd_sized_images_with_sliding_window_and_flip(checkpoints, photos, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli_main(["predict", "--checkpoint", str(checkpoints["teacher"]), "--input", str(photos),
                   "--output", str(out), "--long-side", "64", "--window", "32", "--flip", "--batch", "3",
                   "--train-ids", "--label-ids", "--workers", "0"])
    assert rc == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["images"] == 4 and summary["window"] == 32 and summary["flip"] is True
    assert "\r" not in captured.err  # no progress bar off a terminal
    lut = np.zeros((256, 3), np.uint8)
    lut[:19] = CLASS_COLORS
    for name, (h, w) in _expected_sizes(photos).items():
        paths = output_paths(out, name)
        train_ids = np.array(Image.open(paths["train_ids"]))
        assert train_ids.shape == (h, w) and train_ids.max() < 19
        assert np.array_equal(np.array(Image.open(paths["color"]).convert("RGB")), lut[train_ids])
        assert np.array_equal(np.array(Image.open(paths["label_ids"])), train_ids_to_label_ids(train_ids))
        assert Image.open(paths["overlay"]).size == (w, h)


def test_whole_image_prediction_equals_the_evaluators_path(checkpoints, photos, tmp_path):
    """Without window and flip, a prediction is the evaluation's argmax of upsampled logits."""
    out = tmp_path / "out"
    assert cli_main(["predict", "--checkpoint", str(checkpoints["teacher"]), "--input", str(photos / "b.jpg"),
                     str(photos / "sub"), "--output", str(out), "--train-ids", "--no-progress",
                     "--workers", "0"]) == 0
    model = checkpoints["model"]
    for name, path in [("b", photos / "b.jpg"), ("c", photos / "sub" / "c.png")]:
        image = np.array(Image.open(path).convert("RGB"))
        h, w = scaled_size(*image.shape[:2], EVAL_LONG_SIDE)  # default scale: the model's eval_long_side
        x = torch.from_numpy(resize_image(image, h, w)).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            expected = logits_to_train_ids(model(x), image.shape[:2])[0].numpy()
        got = np.array(Image.open(output_paths(out, name)["train_ids"]))
        assert np.array_equal(got, expected)


class _Pointwise(torch.nn.Module):
    """A 1×1 convolution plus a ramp along the width: sees no context, but is not mirror-symmetric."""

    def __init__(self, ramp: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = torch.nn.Conv2d(3, 5, 1)
        self.ramp = ramp

    def forward(self, x):
        ramp = torch.linspace(0, self.ramp, x.shape[-1], device=x.device)
        out = self.conv(x)
        return out + torch.stack([ramp * (k - 2) for k in range(5)])[None, :, None, :]


def test_sliding_window_covers_the_image_and_equals_one_pass_for_a_context_free_model():
    x = torch.rand(2, 3, 45, 70)
    model = _Pointwise()
    whole = class_logits(model, x)
    for window, overlap in [(16, 0.5), (32, 0.0), (45, 1 / 3), (100, 0.2)]:
        tiled = class_logits(model, x, window=window, overlap=overlap, batch_size=3)
        assert torch.allclose(tiled, whole, atol=1e-6), (window, overlap)
    assert torch.allclose(whole, model(x), atol=1e-6)


def test_flip_averages_the_mirrored_prediction():
    x = torch.rand(1, 3, 20, 30)
    model = _Pointwise(ramp=4.0)
    plain = class_logits(model, x)
    flipped = class_logits(model, x, flip=True)
    mirrored = class_logits(model, x.flip(-1)).flip(-1)
    assert not torch.allclose(plain, mirrored, atol=1e-3)  # the ramp makes the two views differ
    assert torch.allclose(flipped, (plain + mirrored) / 2, atol=1e-6)
    tiled = class_logits(model, x, window=8, overlap=0.25, flip=True, batch_size=5)
    assert torch.allclose(tiled, flipped, atol=1e-5)  # a context-free model: windows change nothing


def test_upsampling_in_strips_equals_one_interpolation():
    torch.manual_seed(0)
    probs = torch.rand(7, 13, 17)
    for size in [(40, 51), (13, 17), (100, 9), (5, 6)]:
        expected = F.interpolate(probs[None], size=size, mode="bilinear", align_corners=False)[0].argmax(0)
        assert torch.equal(upsample_argmax(probs, size, max_elements=7 * size[1] * 3), expected), size


def test_every_segmenter_checkpoint_kind_gives_the_same_prediction(checkpoints, photos, tmp_path):
    results = {}
    for kind in ("teacher", "final", "step"):
        out = tmp_path / kind
        assert cli_main(["predict", "--checkpoint", str(checkpoints[kind]), "--input", str(photos / "a.png"),
                         "--output", str(out), "--train-ids", "--no-progress", "--workers", "0"]) == 0
        results[kind] = np.array(Image.open(output_paths(out, "a")["train_ids"]))
    assert np.array_equal(results["teacher"], results["final"])
    assert np.array_equal(results["teacher"], results["step"])
    _, long_side = load_predictor(checkpoints["step"])
    assert long_side == EVAL_LONG_SIDE  # read from the config stored in the checkpoint


def test_generators_and_non_checkpoints_are_refused_by_name(checkpoints, photos, tmp_path, capsys):
    from sci2i.config.schema import GeneratorConfig
    from sci2i.models.generator import Generator
    from sci2i.train.i2i import save_generator

    gen_dir = tmp_path / "i2i"
    cfg = load_config(None, ["generator.channels=[4,4,8,8]", "generator.latent_dim=4", "generator.style_dim=4",
                             "generator.mapping_layers=1"])
    save_generator(Generator(GeneratorConfig(**vars(cfg.generator))), cfg, gen_dir, step=1)
    save_state({"G": {"w": torch.zeros(1)}, "D": {}, "step": 1}, tmp_path / "i2i_ckpt" / "step_00000001.pt")
    jpeg = photos / "b.jpg"
    for ckpt, words in [(gen_dir, "generator"), (gen_dir / "generator_ema.safetensors", "generator"),
                        (tmp_path / "i2i_ckpt" / "step_00000001.pt", "generator"),
                        (jpeg, "not a checkpoint"), (tmp_path / "missing.safetensors", "not found")]:
        rc = cli_main(["predict", "--checkpoint", str(ckpt), "--input", str(photos), "--output", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert rc == 2 and words in err and str(ckpt) in err, (ckpt, err)
        assert "Traceback" not in err
    with pytest.raises(CheckpointError, match="translate"):
        load_predictor(gen_dir)


def test_inputs_files_globs_and_name_clashes(photos, tmp_path):
    from sci2i.errors import UserError

    items = collect_inputs([str(photos / "a.png"), str(photos / "sub" / "*.png"), str(photos / "**" / "*.jp*g")])
    assert [i.name for i in items] == ["a", "c", "b", "sub/d"]
    other = tmp_path / "other"
    other.mkdir()
    Image.new("RGB", (8, 8)).save(other / "a.png")
    assert len(collect_inputs([str(photos / "a.png"), str(photos)])) == 5  # the same file twice is no clash
    with pytest.raises(UserError, match="both be written"):
        collect_inputs([str(photos), str(other)])
    with pytest.raises(UserError, match="input not found"):
        collect_inputs([str(tmp_path / "nothing")])
    with pytest.raises(UserError, match="matches no image"):
        collect_inputs([str(tmp_path / "*.png")])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="neither an image"):
        collect_inputs([str(tmp_path / "notes.txt")])


def test_video_frames_are_predicted(checkpoints, tmp_path):
    import cv2

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (40, 30))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG video")
    rng = np.random.default_rng(0)
    for _ in range(3):
        writer.write(rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8))
    writer.release()
    out = tmp_path / "out"
    assert cli_main(["predict", "--checkpoint", str(checkpoints["teacher"]), "--input", str(video),
                     "--output", str(out), "--no-progress"]) == 0
    frames = sorted(p.name for p in (out / "clip").glob("*_color.png"))
    assert frames == [f"clip_{k:06d}_color.png" for k in range(3)]
    assert Image.open(out / "clip" / "clip_000002_overlay.jpg").size == (40, 30)


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        cli_main(["predict", "--help"])
    text = capsys.readouterr().out
    for opt in ("--checkpoint", "--input", "--output", "--long-side", "--window", "--overlap", "--flip",
                "--batch", "--train-ids", "--label-ids", "--alpha", "--device", "--workers", "--no-progress"):
        assert opt in text
