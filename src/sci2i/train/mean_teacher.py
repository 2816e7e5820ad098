"""Mean-teacher segmentation training: phases (a) warm-up and (c) final (Eqs. 10-12).

Paper -> code (names used throughout this module):

=================================  ============================================================
paper                              code
=================================  ============================================================
F_S (student)                      ``student`` (:class:`~sci2i.models.deeplab.DeepLabV2`)
F_T (teacher, EMA of F_S)          ``teacher``; :func:`~sci2i.train.ema.ema_update` right
                                   after each optimiser step, never any gradient
x_s, y_s                           ``src`` batch (``cfg.data.source_root``)
G(x_s), y_s                        ``translated`` batch (``cfg.seg.translated_root``); the
                                   controls ``seg.second_source=plain_aug`` (x_s augmented,
                                   :mod:`sci2i.train.augment`) and ``source`` (x_s again)
x_t                                ``trg`` batch (target train split, unlabelled)
P(x_t)                             ``perturb(trg images)`` (:mod:`sci2i.train.perturb`); with
                                   ``seg.con_mix=classmix`` P(x_mix), source classes pasted
                                   onto x_t (:mod:`sci2i.train.class_mix`, not in the paper)
L_FS (Eq. 10)                      ``total`` of :func:`mean_teacher_objective`
L_FS,seg (Eq. 11)                  ``seg_src``: CE(x_s) + CE(G(x_s)), each the mean over its
                                   own valid pixels
                                   (:func:`~sci2i.losses.segmentation.source_cross_entropy`)
L_FS,con (Eq. 12)                  ``con``: :func:`~sci2i.losses.consistency.consistency_loss`
λ_con                              :func:`~sci2i.train.schedules.lambda_con_at`
oracle (target-supervised)         ``seg_trg``, weight ``cfg.seg.lambda_trg_sup``
=================================  ============================================================

Variants are config values, not code paths: source-only is ``seg.lambda_con=0``; phase (a)
is ``seg.translated_root=""``; phase (c) sets ``seg.translated_root``; the oracle is
``seg.lambda_src=0 seg.lambda_trg_sup=1 seg.lambda_con=0``. A stream whose weight is zero is
never read.

One student forward per step: ``[x_s ‖ G(x_s) ‖ P(x_t)]`` are concatenated along the batch
(all training crops are ``crop_size``²). With the backbone's BatchNorm frozen (the default,
see :mod:`sci2i.models.deeplab`) this is exactly three separate forwards, only faster.

Batch composition per step (:func:`batch_plan`): ``seg.batch_size`` = B source images and B
target images. In phase (c) a fraction ``seg.translated_fraction`` (0.5: the paper's 50/50
split) of the B source slots is drawn from G(x_s); with an odd number it alternates between
steps (B = 1: x_s, G(x_s), x_s, ...), so the mix is exact over any two steps. Eq. 11 is
computed as written: the CE of the x_s images plus the CE of the G(x_s) images, each the mean
over its own valid pixels; a step that holds only one of the two sets (odd B) counts its CE
twice, so that the expectation over steps is Eq. 11 at every batch size
(:func:`source_set_count`, docs/METHOD.md "Phases (a) and (c)"). Phase (a) has one set, so its
L_FS,seg is one CE: the supervised term weighs twice as much against λ_con in phase (c), as
in the paper.

Exact resumption: the lr, λ_con, the EMA decay and the batch composition are functions of the
step; each data stream (:class:`~sci2i.data.stream.SampleStream`) restarts at the
number of samples consumed so far; RNG states, the optimiser and both networks are in the
checkpoint. A resumed run therefore takes the same next step as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from sci2i.config import Config, ConfigError, to_yaml
from sci2i.data.custom import check_class_names, run_class_names, run_class_set
from sci2i.data.build import build_source_dataset, build_target_dataset, build_translated_dataset
from sci2i.eval.evaluator import evaluate_segmenter, results_to_json
from sci2i.eval.metrics import headline_metrics
from sci2i.losses.consistency import (
    class_balanced_consistency_loss,
    confident_pixels,
    consistency_loss,
)
from sci2i.losses.segmentation import cross_entropy, source_cross_entropy
from sci2i.models.deeplab import DeepLabV2, build_deeplab
from sci2i.infer.segmenter import WEIGHTS_NAME, load_segmenter, model_meta, predict_logits, save_segmenter
from sci2i.train.class_mix import ClassMix, class_mix_mask, mix_images, mix_teacher_logits, paired_source
from sci2i.train.augment import PlainAugmentation
from sci2i.train.class_prior import ClassPrior
from sci2i.train.ema import ema_update, make_ema, unwrap
from sci2i.train.loop import (
    AmpContext,
    NonFiniteGuard,
    Trainer,
    clip_grad_norm,
    make_optimizer,
    prepare_model,
    stream_seed,
)
from sci2i.train.perturb import Perturbation
from sci2i.data.stream import SampleStream
from sci2i.train.schedules import ema_decay_at, exponential_lr, lambda_con_at
from sci2i.utils.checkpoint import load_state_dict_strict
from sci2i.utils.distributed import barrier, init_distributed, is_main_process, wrap_ddp
from sci2i.utils.rundir import RunDir
from sci2i.utils.runtime import resolve_device, seed_everything

log = logging.getLogger("sci2i")

PHASE = "seg"
#: The student's logged values are ``Loss/student/<name>``; the interval line shows these, in order.
LOSS = "Loss/student/"
_LINE_KEYS = ("total", "seg_src", "seg_trg", "con", "grad_norm", "Schedule/lr", "Schedule/lambda_con")
STREAMS = ("src", "translated", "trg")


# ----------------------------------------------------------------------------- objective
def mean_teacher_objective(
    src_logits: Optional[torch.Tensor],
    src_labels: Optional[torch.Tensor],
    student_trg_logits: Optional[torch.Tensor],
    teacher_trg_logits: Optional[torch.Tensor],
    trg_labels: Optional[torch.Tensor],
    lambda_src: float,
    lambda_con: float,
    lambda_trg_sup: float,
    con_threshold: float = 0.0,
    con_class_balance: bool = False,
    con_loss: str = "mse",
    src_set_sizes: Optional[Sequence[int]] = None,
    num_src_sets: Optional[int] = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_FS = λ_src·L_FS,seg + λ_con·L_FS,con (+ λ_trg_sup·CE on target labels), Eqs. 10-12.

    ``src_*`` cover x_s and G(x_s) (Eq. 11), ``src_set_sizes`` images of each, one after the
    other (``None``: one set); L_FS,seg is their :func:`source_cross_entropy` with
    ``num_src_sets`` sets in the phase. ``student_trg_logits`` = F_S(P(x_t)),
    ``teacher_trg_logits`` = F_T(x_t) (Eq. 12). A term whose inputs are ``None`` is 0.
    ``con_threshold`` > 0 restricts L_FS,con to pixels where the teacher's top probability
    reaches it (:func:`~sci2i.losses.consistency.confident_pixels`); 0 = Eq. 12 as written.
    ``con_class_balance`` averages L_FS,con per teacher class first
    (:func:`~sci2i.losses.consistency.class_balanced_consistency_loss`). ``con_loss`` is the
    per-pixel distance: ``"mse"`` (Eq. 12) or ``"ce"`` (the teacher's argmax as a hard label).
    Returns ``(total, {"seg_src", "con", "seg_trg", "total"})`` (detached parts for logging).
    """
    ref = next(t for t in (src_logits, student_trg_logits) if t is not None)
    zero = ref.new_zeros((), dtype=torch.float32)
    seg_src = (source_cross_entropy(src_logits, src_labels, src_set_sizes, num_src_sets)
               if src_logits is not None else zero)
    con = zero
    if teacher_trg_logits is not None:
        valid = confident_pixels(teacher_trg_logits, con_threshold) if con_threshold > 0 else None
        loss_fn = class_balanced_consistency_loss if con_class_balance else consistency_loss
        con = loss_fn(student_trg_logits, teacher_trg_logits, valid, con_loss)
    seg_trg = cross_entropy(student_trg_logits, trg_labels) if trg_labels is not None else zero
    total = lambda_src * seg_src + lambda_con * con + lambda_trg_sup * seg_trg
    parts = {"seg_src": seg_src, "con": con, "seg_trg": seg_trg, "total": total}
    return total, {k: v.detach() for k, v in parts.items()}


# ----------------------------------------------------------------------------- batch plan
@dataclass(frozen=True)
class BatchPlan:
    """Images drawn from each stream at one step."""

    src: int
    translated: int
    trg: int


def has_second_set(seg_cfg) -> bool:
    """Whether Eq. 11 has its second set: G(x_s) from ``translated_root``, or a control set."""
    return bool(seg_cfg.translated_root) or seg_cfg.second_source != "translated"


def batch_plan(step: int, cfg: Config) -> BatchPlan:
    """How many x_s, G(x_s) and x_t images step ``step`` uses (a pure function of the step)."""
    s = cfg.seg
    b = s.batch_size
    use_src = s.lambda_src > 0
    frac = s.translated_fraction if (has_second_set(s) and use_src) else 0.0
    # translated images among the first k source slots: floor(frac·k), so the split is exact
    # over every window of steps; the epsilon guards against 0.1·30 = 2.9999...
    translated = math.floor(frac * b * (step + 1) + 1e-9) - math.floor(frac * b * step + 1e-9)
    src = b - translated if use_src else 0
    need_trg = lambda_con_at(step, s.con_start, s.lambda_con) > 0 or s.lambda_trg_sup > 0
    return BatchPlan(src=src, translated=translated, trg=b if need_trg else 0)


def source_set_count(cfg: Config) -> int:
    """The labelled image sets that Eq. 11 sums in this phase: x_s, and G(x_s) in phase (c)."""
    s = cfg.seg
    if s.lambda_src <= 0:
        return 0
    frac = s.translated_fraction if has_second_set(s) else 0.0
    return int(frac < 1) + int(frac > 0)


def consumed_before(step: int, cfg: Config) -> dict[str, int]:
    """Samples each stream has yielded before step ``step`` (where a resumed stream starts)."""
    totals = dict.fromkeys(STREAMS, 0)
    for s in range(step):
        plan = batch_plan(s, cfg)
        for k in STREAMS:
            totals[k] += getattr(plan, k)
    return totals


def check_config(cfg: Config) -> None:
    """Combinations that cannot train, refused before any work starts."""
    s = cfg.seg
    if s.lambda_src <= 0 and s.lambda_trg_sup <= 0:
        raise ConfigError(
            "nothing supervises the student: seg.lambda_src and seg.lambda_trg_sup are both 0 "
            "(use lambda_src=1 for UDA or source-only, lambda_trg_sup=1 for the oracle)"
        )
    if s.translated_root and s.second_source != "translated":
        raise ConfigError(f"seg.second_source={s.second_source} replaces G(x_s): leave seg.translated_root "
                          f"empty (it is {s.translated_root})")
    if s.translated_root and not Path(s.translated_root).is_dir():
        raise ConfigError(f"'seg.translated_root' = {s.translated_root} is not a folder (write it "
                          f"with `sci2i translate`)")


# ----------------------------------------------------------------------------- trainer
class MeanTeacherTrainer(Trainer):
    """Student, EMA teacher, optimiser and data streams of one segmentation run.

    The life cycle (``resume``, ``fit``, checkpoints, logging, evaluation every
    ``seg.eval_every`` steps) is :class:`~sci2i.train.loop.Trainer`'s.
    """

    name, phase, lr_key = "train-seg", PHASE, "seg.lr"

    def __init__(self, cfg: Config, run: RunDir, device: torch.device, progress: bool = True,
                 init_weights: str | Path | None = None) -> None:
        check_config(cfg)
        super().__init__(cfg, run, device, progress, steps=cfg.seg.steps, log_every=cfg.seg.log_every,
                         eval_every=cfg.seg.eval_every)
        device, perf = self.device, cfg.perf
        self.student: DeepLabV2 = build_deeplab(cfg.model, run_class_names(cfg.data))
        init = init_weights or cfg.model.init_checkpoint
        if init:
            start = load_segmenter(init)
            check_class_names(self.student.class_names, "the run's data", start.class_names, f"the checkpoint {init}")
            load_state_dict_strict(self.student, start.state_dict(), str(init))
            log.info("student initialised from %s", init)
        self.student = prepare_model(self.student, dataclasses.replace(perf, compile=False), device)
        # F_T starts as a copy of F_S; it is only ever changed by ema_update.
        self.teacher = make_ema(self.student).eval()
        self.student_fwd = wrap_ddp(self.student, device)
        self.teacher_fwd: torch.nn.Module = self.teacher
        if perf.compile:
            self.student_fwd = torch.compile(self.student_fwd)
            self.teacher_fwd = torch.compile(self.teacher)
        self.optimizer = make_optimizer(
            self.student.param_groups(cfg.seg.lr, cfg.model.head_lr_mult), cfg.seg.lr,
            cfg.seg.betas, cfg.seg.weight_decay, perf, device,
        )
        self.amp = AmpContext(perf, device)
        self.guard = NonFiniteGuard(cfg.run.max_nonfinite_steps, name="train-seg")
        self.guards = {"student": self.guard}
        self.perturb = Perturbation.from_config(cfg.seg)
        self.plain_aug = PlainAugmentation() if cfg.seg.second_source == "plain_aug" else None
        self.class_prior = (ClassPrior(self.student.num_classes, device, cfg.seg.con_align_prior)
                            if cfg.seg.con_align else None)
        self.streams: dict[str, SampleStream] = {}
        self.val_set = self._build_val_set()

    # -- data ------------------------------------------------------------------------
    def _build_val_set(self):
        return build_target_dataset(self.cfg.data, self.cfg.data.target_val_split,
                                    with_labels=True, train=False)

    def _datasets(self) -> dict:
        """The training datasets whose weight is non-zero (others are never opened)."""
        cfg, s = self.cfg, self.cfg.seg
        out = {}
        if s.lambda_src > 0:
            out["src"] = build_source_dataset(cfg.data, train=True)
            if s.translated_fraction > 0 and s.translated_root:
                out["translated"] = build_translated_dataset(s.translated_root, cfg.data, train=True)
            elif s.translated_fraction > 0 and has_second_set(s):  # a control: x_s, drawn by a stream of its own
                out["translated"] = build_source_dataset(cfg.data, train=True)
        if s.lambda_con > 0 or s.lambda_trg_sup > 0:
            # The segmentation phases use the target train split only, not the extra
            # sequence frames of the I2I phase (docs/METHOD.md, "Data").
            data = dataclasses.replace(cfg.data, target_extra_dirs=[])
            out["trg"] = build_target_dataset(data, data.target_train_split,
                                              with_labels=s.lambda_trg_sup > 0, train=True)
        return out

    def open_streams(self) -> None:
        start = consumed_before(self.step, self.cfg)
        pin = self.cfg.perf.pin_memory and self.device.type == "cuda"
        for name, ds in self._datasets().items():
            self.streams[name] = SampleStream(
                ds, stream_seed(self.cfg.run.seed, STREAMS.index(name)),
                num_workers=self.cfg.data.num_workers, start=start[name], pin_memory=pin,
                max_bad_files=self.cfg.data.max_bad_files,
            )

    def _take(self, name: str, n: int) -> Optional[dict]:
        return self.streams[name].take(n) if n > 0 else None

    # -- one step --------------------------------------------------------------------
    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.cfg.perf.channels_last and self.device.type == "cuda" and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def train_step(self) -> dict[str, torch.Tensor]:
        """One optimiser step of F_S on L_FS, then the EMA update of F_T (Eqs. 10-12)."""
        cfg, s, step = self.cfg, self.cfg.seg, self.step
        plan = batch_plan(step, cfg)
        lam_con = lambda_con_at(step, s.con_start, s.lambda_con)
        lr = exponential_lr(step, s.lr, s.lr_gamma)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_mult"]

        src_parts = [b for b in (self._take("src", plan.src), self._take("translated", plan.translated)) if b]
        trg = self._take("trg", plan.trg)
        inputs, labels_src = [], None
        if src_parts:
            inputs.append(self._to_device(torch.cat([b["image"] for b in src_parts])))
            if self.plain_aug is not None and plan.translated:  # the control replacing G(x_s)
                inputs[0][plan.src:] = self.plain_aug(inputs[0][plan.src:])
            labels_src = self._to_device(torch.cat([b["label"] for b in src_parts]))
        trg_images = trg_labels = mix = None
        if trg is not None:
            trg_images = self._to_device(trg["image"])
            student_trg = trg_images
            if s.con_mix == "classmix" and lam_con > 0 and src_parts:
                # cross-domain ClassMix (sci2i.train.class_mix): paste source classes onto x_t
                mix_images_src, mix_labels = paired_source(inputs[0], labels_src, trg_images.shape[0])
                mix = ClassMix(class_mix_mask(mix_labels, self.student.num_classes), mix_labels)
                student_trg = mix_images(mix.mask, mix_images_src, trg_images)
            inputs.append(self.perturb(student_trg))  # P(x_t) (or P(x_mix)): photometric, pixel-aligned
            trg_labels = self._to_device(trg["label"]) if "label" in trg else None
        n_src = inputs[0].shape[0] if src_parts else 0
        if self.class_prior is not None and labels_src is not None:
            self.class_prior.observe_source(labels_src)  # π counts from every source batch

        with self.amp.autocast():
            logits = self.student_fwd(torch.cat(inputs))  # [x_s ‖ G(x_s) ‖ P(x_t)] in one pass
            teacher_logits = None
            if lam_con > 0:
                with torch.no_grad():
                    teacher_logits = self.teacher_fwd(trg_images)  # F_T sees the clean x_t
                if self.class_prior is not None:
                    teacher_logits = self.class_prior.align(teacher_logits)
                if mix is not None:
                    teacher_logits = mix_teacher_logits(mix.mask, mix.labels, teacher_logits)
        src_logits = logits[:n_src] if n_src else None
        trg_logits = logits[n_src:] if trg is not None else None
        total, parts = mean_teacher_objective(
            src_logits, labels_src, trg_logits, teacher_logits, trg_labels,
            s.lambda_src, lam_con, s.lambda_trg_sup, s.con_threshold, s.con_class_balance, s.con_loss,
            src_set_sizes=(plan.src, plan.translated), num_src_sets=source_set_count(cfg),
        )

        self.optimizer.zero_grad(set_to_none=True)
        self.amp.backward(total)
        self.amp.unscale(self.optimizer)
        grad_norm = clip_grad_norm(self.student.parameters(), s.grad_clip)
        # With an fp16 GradScaler, inf gradients are the scaler's business (it skips the step
        # and lowers the scale); the guard then watches the loss only.
        watched = (total,) if self.amp.scaler.is_enabled() else (total, grad_norm)
        if self.guard.step_ok(step, *watched):
            self.amp.step(self.optimizer)
            ema_update(self.teacher, self.student, ema_decay_at(step, s.ema_decay, s.ema_warmup))
        parts["grad_norm"] = grad_norm.detach()
        return {**{LOSS + k: v for k, v in parts.items()},
                "Schedule/lr": torch.tensor(lr), "Schedule/lambda_con": torch.tensor(lam_con)}

    # -- state (the loop's own entries: sci2i.train.loop.Trainer.state_dict) -------------
    def model_state(self) -> dict:
        return {
            "student": unwrap(self.student).state_dict(),
            "teacher": self.teacher.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "amp": self.amp.state_dict(),
            "consumed": {k: v.consumed for k, v in self.streams.items()},
            "model_meta": model_meta(self.student),
            **({"class_prior": self.class_prior.state_dict()} if self.class_prior else {}),
        }

    def load_model_state(self, state: dict) -> None:
        load_state_dict_strict(unwrap(self.student), state["student"], "checkpoint (student)")
        load_state_dict_strict(self.teacher, state["teacher"], "checkpoint (teacher)")
        self.optimizer.load_state_dict(state["optimizer"])
        self.amp.load_state_dict(state.get("amp", {}))
        if self.class_prior is not None and "class_prior" in state:
            self.class_prior.load_state_dict(state["class_prior"])

    # -- evaluation & logging --------------------------------------------------------
    def evaluate(self, final: bool = False) -> dict:
        """Teacher F_T on the target val split; JSON + table into ``<run>/eval/``."""
        results: dict = {}
        if is_main_process():
            results = evaluate_segmenter(
                lambda x: predict_logits(self.teacher_fwd, x, self.amp.dtype), self.val_set,
                self.device, progress=self.progress, class_set=run_class_set(self.cfg.data),
                num_workers=min(self.cfg.data.num_workers, 4),
            )
            results["step"] = self.step
            tag = "final" if final else f"step_{self.step:08d}"
            out = self.run.path / "eval"
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{tag}.json").write_text(json.dumps(results_to_json(results), indent=2) + "\n")
            (out / f"{tag}.md").write_text(results["table"] + "\n")
            heads = {f"Eval/{k}": results[k] for k in headline_metrics(results["class_set"])}
            self.run.log_metrics(PHASE, self.step, heads)
            log.info("step %d teacher on %s: %s", self.step, self.cfg.data.target_val_split,
                     ", ".join(f"{k[5:]} {v:.2f}" for k, v in heads.items()))
        barrier()
        return results

    def line_values(self, values: dict[str, float]) -> dict[str, float]:
        shown = {k.removeprefix(LOSS): v for k, v in values.items()}
        return {k: shown[k] for k in _LINE_KEYS if k in shown}

    def finish(self) -> dict:
        """The teacher's weights, then its final evaluation (``eval.json``)."""
        weights = self.run.path / WEIGHTS_NAME
        if is_main_process():
            save_segmenter(self.teacher, weights, to_yaml(self.cfg))
            log.info("teacher weights: %s", weights)
        results = self.evaluate(final=True)
        if is_main_process():
            (self.run.path / "eval.json").write_text((self.run.path / "eval" / "final.json").read_text())
        return {"weights": weights, "eval": results}


def train_segmentation(cfg: Config, out_dir: str | Path | None = None, resume: bool = False,
                       progress: bool = True, init_weights: str | Path | None = None) -> dict:
    """Run one mean-teacher segmentation phase into ``out_dir`` (default ``cfg.run.out_dir``).

    Returns ``{"weights": <run>/teacher.safetensors, "eval": results dict of the final teacher
    evaluation, "run_dir", "step", "stopped"}``; with ``resume`` the run continues from the
    newest checkpoint in ``<run>/checkpoints`` (from scratch when there is none).
    ``init_weights`` (a segmenter file or run directory) overrides ``model.init_checkpoint``.
    """
    if out_dir is not None:
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out_dir=str(out_dir)))
    device = resolve_device(cfg.perf.device)
    init_distributed(device.type)
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    run = RunDir(cfg, cfg.run.out_dir, enabled=is_main_process())
    try:
        trainer = MeanTeacherTrainer(cfg, run, device, progress=progress, init_weights=init_weights)
        if resume:
            trainer.resume()
        return trainer.fit()
    finally:
        run.close()
