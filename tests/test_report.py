"""The run report: every phase in each model's time, the prediction figure and TensorBoard data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fixtures import write_cityscapes
from sci2i.config import load_config, to_yaml
from sci2i.labels import CLASS_NAMES
from sci2i.models.deeplab import DeepLabV2
from sci2i.pipeline.report import model_seconds, write_report
from sci2i.infer.segmenter import save_segmenter


def _eval(miou: float) -> dict:
    return {"mIoU19": miou, "mIoU16": miou + 1, "mIoU13": miou + 2,
            "per_class": {name: miou + k for k, name in enumerate(CLASS_NAMES)}}


@pytest.fixture()
def run(tmp_path):
    write_cityscapes(tmp_path / "cs", n_per_split=3, size=(48, 24), seed=2)
    cfg = load_config(None, [f"data.target_root={tmp_path / 'cs'}", "data.eval_long_side=32", "perf.device=cpu"])
    weights = {}
    for k, name in enumerate(("warmup", "final")):
        torch.manual_seed(k)
        model = DeepLabV2("efficientnet_lite0", "", num_classes=19, aspp_rates=(1, 2, 3, 4), output_stride=16)
        weights[name] = str(save_segmenter(model.eval(), tmp_path / name / "teacher.safetensors", to_yaml(cfg)))
    phase_dir = tmp_path / "out" / "phases" / "final-x"
    phase_dir.mkdir(parents=True)
    (phase_dir / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"phase": "seg", "step": 1, "Loss/total": 2.0}, {"phase": "seg", "step": 2, "Loss/total": 1.5},
        {"phase": "seg", "step": 2, "Eval/mIoU19": 12.5}]) + "\n")
    phases = {"warmup": {"eval": _eval(10.0), "weights": weights["warmup"], "seconds": 60.0},
              "pseudo_labels": {"seconds": 30.0}, "i2i": {"seconds": 120.0}, "translate": {"seconds": 30.0},
              "final": {"eval": _eval(20.0), "weights": weights["final"], "seconds": 60.0, "dir": str(phase_dir)}}
    return cfg, tmp_path / "out", {"phases": phases}


def test_each_models_time_counts_every_phase_it_needed(run):
    cfg, out, summary = run
    assert model_seconds(summary["phases"], "warmup") == 60.0
    assert model_seconds(summary["phases"], "final") == 300.0  # (a) + ŷ_t + (b) + G(x_s) + (c)
    report = write_report(cfg, out, summary).read_text()
    assert "| warm-up M0 (phase a) | 10.0 | 1.0 |" in report
    assert "| final M1 (phase c) | 20.0 | 5.0 |" in report
    assert "all 5.0." in report


def test_prediction_figure_and_tensorboard_data(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, out, summary = run
    report = write_report(cfg, out, summary).read_text()
    figure = out / "figures" / "predictions.png"
    assert figure.stat().st_size > 1000
    assert "the image, its ground truth, and the predictions of warm-up M0 (phase a) and final M1" in report
    assert "![" in report and "figures/predictions.png" in report
    assert "(dashed, right axis)" in report and (out / "figures" / "training_curves.png").is_file()
    events = EventAccumulator(str(out / "tb"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    (image,) = events.Images("report/predictions")
    assert (image.height, image.width) == (3 * 24, 4 * 48)  # 3 val images x (image, truth, M0, M1)
    scalars = set(events.Tags()["scalars"])
    assert {"report/final_M1/mIoU16", "report/final_M1/mIoU13", "report/warm-up_M0/IoU/road",
            "report/final_M1/IoU/bicycle"} <= scalars
    assert events.Scalars("report/final_M1/IoU/sidewalk")[0].value == pytest.approx(21.0)


def test_translation_sentence_says_steps_and_which_side_of_the_source_the_kid_is():
    from sci2i.pipeline.report import translation_sentence

    cfg = load_config(None, ["data.crop_size=128", "i2i.crop_size=64", "i2i.batch_size=2"])
    kid = lambda s, t: {"source_vs_target": {"kid": s}, "translated_vs_target": {"kid": t}}  # noqa: E731
    closer = translation_sentence(cfg, {"phases": {"i2i": {"step": 2500}}, "kid": kid(0.8, 0.6)})
    assert closer == ("G trained 2,500 I2I steps of batch 2 on 64² crops, 0.25% of the paper's 1,000,000 "
                      "iterations; by the KID its translations are closer to the target's look than the "
                      "source images are (0.6000 vs 0.8000, −25%).")
    further = translation_sentence(cfg, {"phases": {"i2i": {"step": 800}}, "kid": kid(0.5, 0.6)})
    assert "further from the target's look" in further and "+20%" in further
    assert translation_sentence(cfg, {"phases": {}}) == ""  # no I2I in the run
    # the unbiased KID can be 0 or negative on a handful of images: no relative change then
    assert translation_sentence(cfg, {"phases": {"i2i": {"step": 2}}, "kid": kid(0.0, 0.1)}).endswith(
        "further from the target's look than the source images are (0.1000 vs 0.0000).")


def test_kid_rows_show_a_spread_only_where_subsets_differ():
    from sci2i.pipeline.report import _steps_and_kid_lines

    whole = {"kid": 0.7120, "kid_std": None, "n_x": 400, "n_y": 400, "subset_size": 400, "num_subsets": 1}
    subsets = {"kid": 0.6531, "kid_std": 0.0123, "n_x": 400, "n_y": 400, "subset_size": 100, "num_subsets": 100}
    lines = _steps_and_kid_lines({"kid": {"features": "f", "source_vs_target": whole,
                                          "translated_vs_target": subsets}})
    rows = [line for line in lines if line.startswith("| source") or line.startswith("| translated")]
    assert rows == ["| source x_s | 0.7120 | 400 vs 400 | 400 |",
                    "| translated G(x_s) | 0.6531 ± 0.0123 | 400 vs 400 | 100 |"]
