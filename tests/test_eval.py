"""Evaluation: confusion matrix on hand-computed cases, mIoU19/16/13, tables, prediction export,
agreement with the official Cityscapes evaluator, the model loop, and ``sci2i evaluate``."""

import glob
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from fixtures import write_cityscapes
from sci2i.cli import main as cli_main
from sci2i.data import CityscapesDataset
from sci2i.data.transforms import EvalTransform
from sci2i.eval.evaluator import evaluate_segmenter, logits_to_train_ids, score_prediction_folder
from sci2i.eval.export import prediction_paths, save_prediction
from sci2i.eval.metrics import ConfusionMatrix, class_set_ids, format_iou_rows, format_iou_table, headline_metrics
from sci2i.labels import CLASS_NAMES, train_ids_to_label_ids


def test_confusion_matrix_hand_computed():
    target = torch.tensor([0, 0, 0, 1, 1, 2, 255, 255])
    pred = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    # class 0: tp 2, fn 1, fp 0 -> 2/3; class 1: tp 1, fn 1, fp 1 -> 1/3; class 2: tp 1, fp 1 -> 1/2
    np.testing.assert_allclose(cm.iou().numpy(), [2 / 3, 1 / 3, 1 / 2])
    s = cm.summary()
    assert s["num_pixels"] == 6  # ignore pixels are not counted
    assert s["mIoU"] == pytest.approx(100 * (2 / 3 + 1 / 3 + 1 / 2) / 3)  # every class of a 3-class set
    assert not {"mIoU19", "mIoU16", "mIoU13"} & set(s)  # Cityscapes' subsets only for its 19 classes
    assert s["pixel_accuracy"] == pytest.approx(100 * 4 / 6)


def test_a_dataset_with_classes_of_its_own_is_scored_on_all_of_them():
    cm = ConfusionMatrix(3, class_names=("flat", "sky", "agent"))
    cm.update(torch.tensor([0, 0, 1, 2, 2]), torch.tensor([0, 1, 1, 2, 255]))
    s = cm.summary()
    assert list(s["per_class"]) == ["flat", "sky", "agent"]
    assert s["per_class"]["sky"] == pytest.approx(50.0) and s["mIoU"] == pytest.approx((50 + 50 + 100) / 3)
    table = format_iou_table(s, "all").splitlines()
    assert table[0] == "| method | flat | sky | agent | mIoU |" and table[2] == "| ours | 50.0 | 50.0 | 100.0 | 66.7 |"
    assert class_set_ids("all", 3) == (0, 1, 2) and headline_metrics("all") == ("mIoU",)
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        ConfusionMatrix(3, class_names=("a", "b"))
    # the evaluator sizes the matrix by the dataset's classes and wants one logit channel per class
    with pytest.raises(ValueError, match="logits must have 3 channels"):
        logits_to_train_ids(torch.zeros(1, 19, 2, 2), (2, 2), 3)
    assert logits_to_train_ids(torch.eye(3).reshape(1, 3, 3, 1), (3, 1), 3).flatten().tolist() == [0, 1, 2]


def test_predictions_outside_the_classes_are_misses_only():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([255, 7, 1, 1]), torch.tensor([1, 1, 1, 0]))
    # class 1: tp 1, fn 2 (the two invalid predictions), fp 1 -> 1/4; class 0: tp 0, fn 1 -> 0
    np.testing.assert_allclose(cm.iou().numpy()[:2], [0.0, 1 / 4])
    assert int(cm.mat[:, :3].sum()) == 2  # invalid predictions are no class's false positive
    assert math.isnan(cm.iou()[2])  # never present, never predicted


def test_streaming_equals_one_shot_and_reset():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 20, size=(4, 16, 16))
    target[target == 19] = 255
    pred = rng.integers(0, 19, size=(4, 16, 16))
    a, b = ConfusionMatrix(), ConfusionMatrix()
    a.update(pred, target)
    for p, t in zip(pred, target):
        b.update(torch.from_numpy(p), torch.from_numpy(t))
    assert torch.equal(a.mat, b.mat)
    b.reset()
    assert int(b.mat.sum()) == 0
    with pytest.raises(ValueError, match="shape"):
        a.update(pred[0], target)


def test_miou_class_sets():
    # Perfect on every class except that all 'wall' (3) pixels are predicted as 'road' (0) and
    # 'terrain' (9) pixels as 'vegetation' (8).
    target = torch.arange(19).repeat_interleave(10)
    pred = target.clone()
    pred[target == 3] = 0
    pred[target == 9] = 8
    s = (cm := ConfusionMatrix()).update(pred, target) or cm.summary()
    iou = {n: v / 100 for n, v in s["per_class"].items()}
    assert iou["wall"] == 0 and iou["terrain"] == 0 and iou["road"] == pytest.approx(0.5)
    assert iou["vegetation"] == pytest.approx(0.5) and iou["car"] == 1
    assert s["mIoU19"] == pytest.approx(100 * (15 + 0.5 + 0.5) / 19)
    assert s["mIoU16"] == pytest.approx(100 * (13 + 0.5 + 0.5) / 16)  # terrain not in the 16
    assert s["mIoU13"] == pytest.approx(100 * (11 + 0.5 + 0.5) / 13)  # wall not in the 13 either


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_confusion_matrix_on_gpu_matches_cpu():
    rng = np.random.default_rng(1)
    target = torch.from_numpy(rng.integers(0, 19, size=(2, 64, 64)))
    pred = torch.from_numpy(rng.integers(0, 19, size=(2, 64, 64)))
    cpu, gpu = ConfusionMatrix(), ConfusionMatrix(device="cuda")
    cpu.update(pred, target)
    gpu.update(pred.cuda(), target.cuda())
    assert gpu.mat.is_cuda and torch.equal(cpu.mat, gpu.mat.cpu())


def test_tables_in_paper_layout():
    cm = ConfusionMatrix()
    cm.update(torch.arange(19), torch.arange(19))
    s = cm.summary()
    s["per_class"]["terrain"] = 12.345
    t19 = format_iou_table(s, "cityscapes19").splitlines()
    head = [c.strip() for c in t19[0].strip("|").split("|")]
    assert head[0] == "method" and head[1:4] == ["road", "sidewalk", "building"] and head[-1] == "mIoU19"
    assert len(head) == 1 + 19 + 1 and "12.3" in t19[2] and "100.0" in t19[2]
    t16 = format_iou_rows({"a": s, "b": s}, "synthia16").splitlines()
    head16 = [c.strip() for c in t16[0].strip("|").split("|")]
    assert len(head16) == 1 + 16 + 2 and head16[-2:] == ["mIoU16", "mIoU13"]
    assert "wall*" in head16 and "fence*" in head16 and "pole*" in head16 and "terrain" not in head16
    assert len(t16) == 4 and t16[3].startswith("| b |")


def test_save_prediction_layout_and_values(tmp_path):
    pred = np.array([[0, 10, 255], [18, 13, 5]], dtype=np.uint8)
    ids_path, color_path = save_prediction(pred, tmp_path, "frankfurt/frankfurt_000000_000294_leftImg8bit.png")
    assert ids_path == tmp_path / "labelIds/frankfurt/frankfurt_000000_000294_labelIds.png"
    assert color_path == tmp_path / "color/frankfurt/frankfurt_000000_000294_color.png"
    assert np.array(Image.open(ids_path)).tolist() == [[7, 23, 0], [33, 26, 17]]
    color = np.array(Image.open(color_path).convert("RGB"))
    assert color[0, 0].tolist() == [128, 64, 128] and color[0, 2].tolist() == [0, 0, 0]
    assert prediction_paths(tmp_path, "images/00001.png")[0] == tmp_path / "labelIds/images/00001_labelIds.png"


def _noisy_predictions(written, out_dir, seed=0):
    """Ground truth trainIds with 30 % of pixels replaced by random classes or 255."""
    rng = np.random.default_rng(seed)
    for name, gt in zip(written.names, written.train_ids):
        pred = gt.copy()
        flip = rng.random(gt.shape) < 0.3
        pred[flip] = rng.choice(np.r_[np.arange(19), 255], size=int(flip.sum()))
        pred[pred == 255] = np.where(rng.random(int((pred == 255).sum())) < 0.5, 255, 2)
        save_prediction(pred, out_dir, name)


@pytest.fixture(scope="module")
def cityscapes_val(tmp_path_factory):
    root = tmp_path_factory.mktemp("cs")
    written = write_cityscapes(root, splits=("val",), n_per_split=4, size=(64, 32), seed=3)["val"]
    preds = tmp_path_factory.mktemp("preds")
    _noisy_predictions(written, preds)
    return root, written, preds


def _official_scores(cs_root, pred_dir, monkeypatch):
    """Score with cityscapesscripts' pixel-level evaluator (reads the files itself)."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    a = official.args
    for key, value in dict(
        cityscapesPath=str(cs_root), predictionPath=str(pred_dir), predictionWalk=None,
        evalInstLevelScore=False, JSONOutput=False, quiet=True, colorized=False,
    ).items():
        monkeypatch.setattr(a, key, value, raising=False)
    gts = sorted(glob.glob(str(cs_root / "gtFine" / "val" / "*" / "*_gtFine_labelIds.png")))
    preds = [official.getPrediction(a, gt) for gt in gts]
    return official.evaluateImgLists(preds, gts, a)


def test_scores_match_the_official_cityscapes_evaluator(cityscapes_val, monkeypatch):
    root, written, preds = cityscapes_val
    ours = score_prediction_folder(preds, root, "val")
    official = _official_scores(root, preds / "labelIds", monkeypatch)
    assert ours["num_images"] == 4
    for name in CLASS_NAMES:
        o = official["classScores"][name]
        if math.isnan(o):
            assert math.isnan(ours["per_class"][name])
        else:
            assert ours["per_class"][name] == pytest.approx(100 * o, abs=1e-9), name
    assert ours["mIoU19"] == pytest.approx(100 * official["averageScoreClasses"], abs=1e-9)
    assert 20 < ours["mIoU19"] < 95  # noisy but not random


def test_score_folder_with_train_ids_and_missing_predictions(cityscapes_val, tmp_path):
    root, written, preds = cityscapes_val
    for name, gt in zip(written.names, written.train_ids):
        p = tmp_path / "tid" / name.replace("_leftImg8bit", "_pred")
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(gt).save(p)
    perfect = score_prediction_folder(tmp_path / "tid", root, train_ids=True)
    present = [v for v in perfect["per_class"].values() if not math.isnan(v)]
    assert present and all(v == 100.0 for v in present) and perfect["mIoU19"] == 100.0
    # The same files read as labelIds are wrong almost everywhere.
    assert score_prediction_folder(tmp_path / "tid", root)["mIoU19"] < 50
    p.unlink()
    from sci2i.errors import DataError

    with pytest.raises(DataError, match="no prediction.*1 of 4"):
        score_prediction_folder(tmp_path / "tid", root, train_ids=True)


def test_logits_upsampled_to_label_resolution():
    logits = torch.zeros(1, 19, 2, 2)
    logits[0, 0, :, 0] = 1  # left column road
    logits[0, 10, :, 1] = 1  # right column sky
    pred = logits_to_train_ids(logits, (32, 64))
    assert pred.shape == (1, 32, 64)
    assert (pred[0, :, :32] == 0).all() and (pred[0, :, 32:] == 10).all()
    synthia = torch.zeros(1, 16, 4, 4)
    synthia[0, 9] = 1  # channel 9 of the 16 SYNTHIA classes is trainId 10 (sky)
    assert (logits_to_train_ids(synthia, (8, 8)) == 10).all()


def test_evaluate_segmenter_scores_and_exports(cityscapes_val, tmp_path):
    root, written, _ = cityscapes_val
    ds = CityscapesDataset(root, "val", transform=EvalTransform(32))
    seen_sizes = []

    def predict_fn(images):
        seen_sizes.append(tuple(images.shape))
        logits = torch.zeros(images.shape[0], 19, 3, 2)
        logits[:, 0, :, 0] = 1  # left half road, right half sky once upsampled
        logits[:, 10, :, 1] = 1
        return logits

    res = evaluate_segmenter(predict_fn, ds, "cpu", export_dir=tmp_path / "out", progress=False)
    assert seen_sizes == [(1, 3, 16, 32)] * 4  # eval_long_side input, in [0, 1]
    cm = ConfusionMatrix()
    for gt in written.train_ids:
        pred = np.where(np.arange(64) < 32, 0, 10)[None].repeat(32, 0)
        cm.update(torch.from_numpy(pred), torch.from_numpy(gt.astype(np.int64)))
    assert res["mIoU19"] == pytest.approx(cm.summary()["mIoU19"])
    assert res["num_images"] == 4 and "| road |" in res["table"].replace("| method ", "")
    again = score_prediction_folder(tmp_path / "out", root)
    assert again["mIoU19"] == pytest.approx(res["mIoU19"])
    exported = np.array(Image.open(tmp_path / "out/labelIds" / written.names[0].replace("leftImg8bit", "labelIds")))
    assert exported.shape == (32, 64) and set(np.unique(exported).tolist()) == {7, 23}


def test_cli_evaluate_predictions(cityscapes_val, tmp_path, capsys):
    root, _, preds = cityscapes_val
    out = tmp_path / "scores.json"
    code = cli_main(["evaluate", "--predictions", str(preds), "--target-root", str(root),
                     "--class-set", "synthia16", "--json", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    scores = json.loads(out.read_text())
    assert f"mIoU16: {scores['mIoU16']:.2f}" in printed and "mIoU13:" in printed and "pole*" in printed
    assert scores["mIoU19"] == pytest.approx(score_prediction_folder(preds, root)["mIoU19"])
    assert cli_main(["evaluate", "--predictions", str(tmp_path / "none"), "--target-root", str(root)]) == 2
    assert "prediction folder not found" in capsys.readouterr().err


def test_cli_evaluate_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        cli_main(["evaluate", "--help"])
    text = capsys.readouterr().out
    for opt in ("--predictions", "--checkpoint", "--target-root", "--split", "--class-set",
                "--train-ids", "--export", "--max-images", "--json", "--no-progress"):
        assert opt in text
    assert "SCI2I_TARGET_ROOT" in text and "labelIds" in text
