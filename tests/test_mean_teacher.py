"""Mean-teacher training end to end on tiny fixture data (CPU, num_workers=0, deterministic).

Teacher contract (no gradient, exact EMA), batch composition, loss goes down, checkpoint ->
resume equals an uninterrupted run, segmenter files load, pseudo labels round-trip through
CityscapesDataset(label_dir=...), and the evaluate/pseudo-label commands.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import tiny_seg_overrides, write_cityscapes, write_gta5
from PIL import Image

from sci2i.cli import main as cli_main
from sci2i.config import ConfigError, load_config
from sci2i.data.datasets import CityscapesDataset, pseudo_label_path
from sci2i.losses.segmentation import cross_entropy
from sci2i.infer.segmenter import confidence_path, load_segmenter, predict_logits, write_pseudo_labels
from sci2i.train.mean_teacher import (
    MeanTeacherTrainer,
    batch_plan,
    consumed_before,
    mean_teacher_objective,
    train_segmentation,
)
from sci2i.utils.checkpoint import load_state
from sci2i.utils.rundir import RunDir, read_metrics
from sci2i.utils.runtime import seed_everything


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_gta5(root / "gta", n=6, size=(64, 32), seed=1)
    write_gta5(root / "translated", n=6, size=(64, 32), seed=2)
    write_cityscapes(root / "cs", n_per_split=3, size=(64, 32), seed=3)
    return root


def _cfg(data: Path, *extra: str):
    return load_config(None, [*tiny_seg_overrides(data), *extra])


def test_batch_plan_mixes_translated_50_50_and_counts_consumption(tmp_path):
    cfg = load_config(None, [f"seg.translated_root={tmp_path}", "seg.batch_size=1", "seg.con_start=2"])
    plans = [batch_plan(s, cfg) for s in range(4)]
    assert [(p.src, p.translated, p.trg) for p in plans] == [(1, 0, 0), (0, 1, 0), (1, 0, 1), (0, 1, 1)]
    cfg4 = load_config(None, [f"seg.translated_root={tmp_path}", "seg.batch_size=4"])
    assert (batch_plan(0, cfg4).src, batch_plan(0, cfg4).translated) == (2, 2)
    assert consumed_before(4, cfg) == {"src": 2, "translated": 2, "trg": 2}
    oracle = load_config(None, ["seg.lambda_src=0", "seg.lambda_con=0", "seg.lambda_trg_sup=1"])
    assert (batch_plan(0, oracle).src, batch_plan(0, oracle).trg) == (0, oracle.seg.batch_size)
    source_only = load_config(None, ["seg.lambda_con=0", "seg.con_start=0"])
    assert batch_plan(5, source_only).trg == 0


def test_objective_weights_switch_terms_off():
    torch.manual_seed(0)
    src, trg_s, trg_t = torch.randn(1, 19, 4, 4), torch.randn(1, 19, 4, 4), torch.randn(1, 19, 4, 4)
    y = torch.randint(0, 19, (1, 4, 4))
    total, parts = mean_teacher_objective(src, y, trg_s, trg_t, None, 1.0, 0.0, 0.0)
    torch.testing.assert_close(total, cross_entropy(src, y))
    total, parts = mean_teacher_objective(src, y, trg_s, trg_t, None, 1.0, 2.0, 0.0)
    torch.testing.assert_close(total, parts["seg_src"] + 2.0 * parts["con"])
    assert parts["con"] > 0 and parts["seg_trg"] == 0


def test_objective_uses_the_configured_consistency_distance():
    from sci2i.losses.consistency import consistency_loss

    torch.manual_seed(0)
    src, trg_s, trg_t = torch.randn(1, 19, 4, 4), torch.randn(1, 19, 4, 4), torch.randn(1, 19, 4, 4)
    y = torch.randint(0, 19, (1, 4, 4))
    _, mse = mean_teacher_objective(src, y, trg_s, trg_t, None, 1.0, 1.0, 0.0)
    _, ce = mean_teacher_objective(src, y, trg_s, trg_t, None, 1.0, 1.0, 0.0, con_loss="ce")
    torch.testing.assert_close(mse["con"], consistency_loss(trg_s, trg_t))
    torch.testing.assert_close(ce["con"], consistency_loss(trg_s, trg_t, kind="ce"))
    assert not torch.allclose(mse["con"], ce["con"])


def test_phase_c_step_computes_eq11_over_both_sets(data, tmp_path, monkeypatch):
    """The trainer hands the x_s / G(x_s) split to Eq. 11 (a sum of per-set means)."""
    import sci2i.train.mean_teacher as mt

    calls = []

    def spy(logits, target, set_sizes=None, num_sets=None):
        calls.append((tuple(set_sizes), num_sets))
        return mt_source_ce(logits, target, set_sizes, num_sets)

    mt_source_ce = mt.source_cross_entropy
    monkeypatch.setattr(mt, "source_cross_entropy", spy)
    cfg = _cfg(data, "seg.steps=2", f"seg.translated_root={data / 'translated'}", "seg.batch_size=2")
    seed_everything(0, True)
    trainer = MeanTeacherTrainer(cfg, RunDir(cfg, tmp_path / "r"), torch.device("cpu"), progress=False)
    trainer.open_streams()
    trainer.train_step()
    assert calls == [((1, 1), 2)]


def test_nothing_supervised_is_refused(data, tmp_path):
    with pytest.raises(ConfigError, match="nothing supervises"):
        train_segmentation(_cfg(data, "seg.lambda_src=0"), tmp_path / "r", progress=False)


def test_teacher_gets_no_gradient_and_is_exact_ema_of_student(data, tmp_path):
    cfg = _cfg(data, "seg.steps=3", "seg.ema_decay=0.9")
    seed_everything(0, True)
    trainer = MeanTeacherTrainer(cfg, RunDir(cfg, tmp_path / "r"), torch.device("cpu"), progress=False)
    trainer.open_streams()
    assert all(not p.requires_grad for p in trainer.teacher.parameters())
    teacher_before = copy.deepcopy(trainer.teacher.state_dict())
    trainer.train_step()  # step 0: warm-up decay min(1 - 1/1, 0.9) = 0 -> teacher = student
    trainer.step += 1
    for (name, t), s in zip(trainer.teacher.named_parameters(), trainer.student.parameters()):
        torch.testing.assert_close(t, s, msg=name)
    assert any(not torch.equal(teacher_before[k], v) for k, v in trainer.teacher.state_dict().items())
    teacher_0 = {k: v.clone() for k, v in trainer.teacher.named_parameters()}
    parts = trainer.train_step()  # step 1 uses the consistency loss; decay min(1 - 1/2, 0.9) = 0.5
    assert parts["Loss/student/con"] > 0 and float(parts["Schedule/lambda_con"]) == cfg.seg.lambda_con
    assert all(p.grad is None for p in trainer.teacher.parameters())
    for (name, t), s in zip(trainer.teacher.named_parameters(), trainer.student.parameters()):
        torch.testing.assert_close(t, 0.5 * teacher_0[name] + 0.5 * s, msg=name)


def test_training_lowers_the_source_loss(data, tmp_path):
    cfg = _cfg(data, "seg.steps=15", "seg.lr=2e-3", "seg.lambda_con=1")
    seed_everything(0, True)
    trainer = MeanTeacherTrainer(cfg, RunDir(cfg, tmp_path / "r"), torch.device("cpu"), progress=False)
    from sci2i.data.build import build_source_dataset

    ds = build_source_dataset(cfg.data, train=False)
    images = torch.stack([ds[i]["image"] for i in range(4)])
    labels = torch.stack([ds[i]["label"] for i in range(4)])

    def loss() -> float:
        return float(cross_entropy(predict_logits(trainer.student.eval(), images), labels))

    before = loss()
    trainer.student.train()
    trainer.fit()
    after = loss()
    assert after < 0.8 * before, (before, after)
    logged = [m for m in read_metrics(tmp_path / "r") if "Loss/student/total" in m]
    assert logged and {"Loss/student/seg_src", "Loss/student/con", "Loss/student/grad_norm", "Schedule/lr",
                       "Schedule/lambda_con"} <= set(logged[-1])
    assert (tmp_path / "r" / "teacher.safetensors").is_file() and (tmp_path / "r" / "eval.json").is_file()


def _final_state(run: Path) -> dict:
    ckpts = sorted((run / "checkpoints").glob("step_*.pt"))
    return load_state(ckpts[-1])


@pytest.mark.parametrize("variant", ["eq12", "con_align", "con_mix", "eval_at_checkpoint"])
def test_checkpoint_resume_equals_uninterrupted_run(data, tmp_path, monkeypatch, variant):
    # phase (c)-like: translated mix alternating at batch 1, consistency from step 2 on;
    # with con_align the source class counts of steps 0-1 must survive the checkpoint; with
    # con_mix the class draws of the resumed steps must equal the uninterrupted run's; with an
    # evaluation at the checkpoint's step, the random numbers it draws (its data loader) must
    # not make the uninterrupted run diverge from the resumed one.
    align = variant == "con_align"
    extra = [f"seg.translated_root={data / 'translated'}", "seg.batch_size=1", "seg.con_start=2",
             f"seg.con_align={str(align).lower()}",
             f"seg.con_mix={'classmix' if variant == 'con_mix' else 'none'}",
             *(["seg.eval_every=2", "run.checkpoint_every=2", "run.keep_checkpoints=3"]
               if variant == "eval_at_checkpoint" else [])]
    import sci2i.train.mean_teacher as mt

    mixed_targets = []

    def recording_mix(mask, labels, teacher_logits):
        out = mt_mix(mask, labels, teacher_logits)
        mixed_targets.append((mask, labels, out))
        return out

    mt_mix, mt_mix_images = mt.mix_teacher_logits, mt.mix_images
    mixed_inputs = []
    monkeypatch.setattr(mt, "mix_teacher_logits", recording_mix)
    monkeypatch.setattr(mt, "mix_images", lambda *a: mixed_inputs.append(a[0]) or mt_mix_images(*a))
    full = train_segmentation(_cfg(data, "seg.steps=4", *extra), tmp_path / "full", progress=False)
    if variant == "eval_at_checkpoint":  # interrupted after the mid-run checkpoint of step 2
        train_segmentation(_cfg(data, "seg.steps=4", *extra), tmp_path / "split", progress=False)
        (tmp_path / "split" / "checkpoints" / "step_00000004.pt").unlink()
    else:
        train_segmentation(_cfg(data, "seg.steps=2", *extra), tmp_path / "split", progress=False)
    resumed = train_segmentation(_cfg(data, "seg.steps=4", *extra), tmp_path / "split", resume=True, progress=False)
    assert full["step"] == resumed["step"] == 4
    a, b = _final_state(tmp_path / "full"), _final_state(tmp_path / "split")
    assert a["consumed"] == b["consumed"] == {"src": 2, "translated": 2, "trg": 2}
    assert ("class_prior" in a) == ("class_prior" in b) == align
    # full run steps 2, 3 + resumed run steps 2, 3 went through the mixed target with con_mix
    assert len(mixed_targets) == len(mixed_inputs) == (4 if variant == "con_mix" else 0)
    for (mask, _, _), input_mask in zip(mixed_targets, mixed_inputs):
        assert mask is input_mask  # the student's input and its target share the pasted pixels
    assert variant != "con_mix" or any(m.any() for m in mixed_inputs)
    for mask, labels, target in mixed_targets:  # the pasted pixels' target is their source label
        probs = target.float().softmax(1)
        assert torch.equal(probs.argmax(1)[mask], labels[mask].long())
        assert torch.equal(probs.amax(1)[mask], torch.ones(int(mask.sum())))
    if align:  # the teacher target of both consistency steps (2 and 3) went through align()
        assert int(a["class_prior"]["teacher_batches"]) == 2
        assert a["class_prior"]["source_counts"].sum() > 0
    for k, v in a.get("class_prior", {}).items():
        assert torch.equal(v, b["class_prior"][k]), k
    for net in ("student", "teacher"):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), (net, k)
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for k, st in a["optimizer"]["state"].items():
        assert torch.equal(st["exp_avg"], b["optimizer"]["state"][k]["exp_avg"])


def test_oracle_and_source_only_are_config_values(data, tmp_path):
    oracle = train_segmentation(
        _cfg(data, "seg.steps=2", "seg.lambda_src=0", "seg.lambda_con=0", "seg.lambda_trg_sup=1"),
        tmp_path / "oracle", progress=False)
    logged = [m for m in read_metrics(tmp_path / "oracle") if "Loss/student/total" in m]
    assert logged[-1]["Loss/student/seg_src"] == 0 and logged[-1]["Loss/student/seg_trg"] > 0
    assert oracle["eval"]["num_images"] == 3
    train_segmentation(_cfg(data, "seg.steps=2", "seg.lambda_con=0"), tmp_path / "src", progress=False)
    logged = [m for m in read_metrics(tmp_path / "src") if "Loss/student/total" in m]
    assert logged[-1]["Loss/student/con"] == 0 and logged[-1]["Loss/student/seg_trg"] == 0


def test_segmenter_files_and_pseudo_labels_round_trip(data, tmp_path):
    run = tmp_path / "r"
    train_segmentation(_cfg(data, "seg.steps=2"), run, progress=False)
    model = load_segmenter(run / "teacher.safetensors")
    from_ckpt = load_segmenter(sorted((run / "checkpoints").glob("*.pt"))[-1])
    from_dir = load_segmenter(run)
    for k, v in model.state_dict().items():
        assert torch.equal(v, from_ckpt.state_dict()[k]) and torch.equal(v, from_dir.state_dict()[k])
    assert model.input_norm == "torchvision" or model.input_norm == "tf_lite"

    images = CityscapesDataset(data / "cs", "train", with_labels=False)
    out = tmp_path / "pl"
    n = write_pseudo_labels(model, images, out, "cpu", long_side=64, confidence=True, progress=False)
    assert n == len(images) == 3
    back = CityscapesDataset(data / "cs", "train", label_dir=out)
    for i in range(len(back)):
        item = back[i]
        logits = predict_logits(model, item["image"][None])
        assert item["label"].shape == (32, 64)
        assert torch.equal(item["label"], logits.argmax(1)[0])
        conf = np.asarray(Image.open(confidence_path(out, item["name"])))
        assert conf.dtype == np.uint8 and conf.shape == (32, 64) and conf.max() > 0
        assert pseudo_label_path(out, item["name"]).is_file()

    # the commands: pseudo-label and evaluate --checkpoint
    assert cli_main(["pseudo-label", "--checkpoint", str(run), "--target-root", str(data / "cs"),
                     "--out", str(tmp_path / "pl2"), "--num-workers", "0", "--no-progress"]) == 0
    for p in sorted(out.rglob("*.png")):
        if not p.name.endswith("_confidence.png"):
            again = tmp_path / "pl2" / p.relative_to(out)
            assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(again)))
    assert cli_main(["evaluate", "--checkpoint", str(run / "teacher.safetensors"), "--target-root",
                     str(data / "cs"), "--json", str(tmp_path / "e.json"), "--no-progress"]) == 0
    assert (tmp_path / "e.json").is_file()
