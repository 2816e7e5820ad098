"""Phase (b): training the generator G and the discriminator D (Eqs. 1-9).

One training step, in order (:meth:`I2ITrainer.train_step`):

1. **Translate once**: ``fake = G(x_s)`` and its frozen trunk features ``φ(fake)``, kept with
   G's graph. ``φ(x_t)`` is computed without a graph (the trunk is frozen, x_t is data).
2. **D-step** (``L^D``, Eq. 7): D's residual blocks and heads run once on
   ``[φ(fake).detach(), φ(x_t)]``; G(x_s) is detached, so D's objective never reaches G.
   Online pseudo labels (``i2i.pseudo_labels=online``) are the AC head's argmax on x_t from
   this same pass (no gradient). Only D's optimiser steps.
3. **G-step** (``L^G``, Eq. 9): the *updated* D's trainable parts run on ``φ(fake)`` (the
   trunk features are reused: the trunk is frozen, so they are the same) with D's parameters
   switched to ``requires_grad=False``, so D accumulates nothing; ``G(x_t)`` for the identity
   term. The AC head's CE on G(x_s) (``L^{G,seg}``) thus reaches G through the frozen trunk.
   Only G's optimiser steps; then the EMA of G is updated (explicit call).

Both steps: Adam at a constant lr, global-norm gradient clipping (``i2i.grad_clip``), a
non-finite guard that skips a bad step and stops after ``run.max_nonfinite_steps`` in a row.

Schedules (functions of the step, :func:`loss_weights_at`): λ_pl and λ_cgan are constant with
pre-computed pseudo labels and fade linearly 0 → value between ``i2i.fade_start`` and
``i2i.fade_end`` with online pseudo labels (paper §4.2).

The life cycle (``resume``, ``fit``, checkpoints, the non-finite guards' counters, window-mean
logging, samples every ``i2i.sample_every`` steps, graceful stop) is
:class:`~sci2i.train.loop.Trainer`'s, as for the segmentation trainer. Resuming is exact: a
checkpoint holds G, EMA-G, D's trainable parts, both optimisers (and AMP scalers), the step, both
guards, all RNG states and the resolved config; the data streams
(:class:`sci2i.data.stream.SampleStream`) restart at sample ``step · batch_size``.

Paper -> code: G -> ``trainer.G``, EMA of G -> ``trainer.G_ema``, D -> ``trainer.D``,
L^D -> ``Loss/D/total``, L^G -> ``Loss/G/total`` (see :mod:`sci2i.losses.i2i` for the terms).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import yaml
from omegaconf import OmegaConf
from PIL import Image

from sci2i.config import Config
from sci2i.config.schema import DataConfig, I2IConfig
from sci2i.data.build import build_source_dataset, build_target_dataset
from sci2i.data.custom import run_class_names, run_class_set
from sci2i.data.robust import BadFileLedger, readable
from sci2i.errors import UserError
from sci2i.eval.kid import kid_monitor
from sci2i.figures.i2i import make_pairs_figure
from sci2i.labels import class_set_ids
from sci2i.losses.i2i import discriminator_loss, generator_loss, restrict_labels
from sci2i.models.discriminator import Discriminator, DiscriminatorOutput
from sci2i.models.generator import Generator
from sci2i.train.ema import ema_update, make_ema
from sci2i.train.loop import (
    AmpContext,
    NonFiniteGuard,
    Trainer,
    clip_grad_norm,
    make_optimizer,
    prepare_model,
    stream_seed,
)
from sci2i.data.stream import SampleStream
from sci2i.train.schedules import linear_ramp
from sci2i.infer.translate import GENERATOR_CONFIG, GENERATOR_WEIGHTS
from sci2i.utils import distributed as dist_utils
from sci2i.utils.checkpoint import save_weights
from sci2i.utils.rundir import RunDir
from sci2i.utils.runtime import resolve_device, seed_everything

log = logging.getLogger("sci2i")

#: Fixed latent seed of the validation samples (TensorBoard) and the final figure.
SAMPLE_Z_SEED = 0


@dataclass(frozen=True)
class LossWeights:
    lambda_pl: float
    lambda_cgan: float


def loss_weights_at(step: int, cfg: I2IConfig) -> LossWeights:
    """λ_pl and λ_cgan at ``step``: constant (pre-computed pseudo labels) or faded (online)."""
    if cfg.pseudo_labels == "online":
        return LossWeights(linear_ramp(step, cfg.fade_start, cfg.fade_end, cfg.lambda_pl),
                           linear_ramp(step, cfg.fade_start, cfg.fade_end, cfg.lambda_cgan))
    return LossWeights(cfg.lambda_pl, cfg.lambda_cgan)


def _all_reduce_grads(params: list[torch.Tensor]) -> None:
    """Average gradients over processes (multi-GPU); a no-op in a single process.

    Done by hand instead of DDP because D's parameters are switched off during the G-step,
    which DDP's gradient hooks do not allow.
    """
    if not dist_utils.is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if grads:
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= dist_utils.world_size()
        torch._foreach_copy_(grads, [t.view_as(g) for t, g in zip(flat.split([g.numel() for g in grads]), grads)])


class I2ITrainer(Trainer):
    """G, its EMA, D, their optimisers, data streams and the alternating D/G step.

    The life cycle is :class:`~sci2i.train.loop.Trainer`'s (see the module docstring);
    :meth:`train_step` draws the next batches and calls :meth:`step_on_batch`, the D-step and
    G-step on given tensors.
    """

    name, phase, lr_key = "train-i2i", "i2i", "i2i.lr"

    def __init__(self, cfg: Config, run: RunDir, device: torch.device | str = "cpu",
                 progress: bool = True) -> None:
        super().__init__(cfg, run, device, progress, steps=cfg.i2i.steps, log_every=cfg.i2i.log_every,
                         eval_every=cfg.i2i.sample_every)
        G = Generator(cfg.generator).to(self.device)
        self.D = Discriminator(cfg.discriminator, num_classes=len(run_class_names(cfg.data))).to(self.device)
        # Ranks are seeded differently (different z and noise): start from rank 0's weights.
        dist_utils.broadcast_module(G)
        dist_utils.broadcast_module(self.D)
        self.G_ema = make_ema(G).eval()
        self.G = prepare_model(G, cfg.perf, self.device)
        if cfg.perf.channels_last and self.device.type == "cuda":
            self.D = self.D.to(memory_format=torch.channels_last)
        i2i = cfg.i2i
        self.opt_G = make_optimizer(self.G.parameters(), i2i.lr, i2i.betas, perf=cfg.perf, device=self.device)
        self.opt_D = make_optimizer(self.D.trainable_parameters(), i2i.lr, i2i.betas, perf=cfg.perf,
                                    device=self.device)
        self.amp_G = AmpContext(cfg.perf, self.device)
        self.amp_D = AmpContext(cfg.perf, self.device)
        self.guard_G = NonFiniteGuard(cfg.run.max_nonfinite_steps, "I2I generator")
        self.guard_D = NonFiniteGuard(cfg.run.max_nonfinite_steps, "I2I discriminator")
        self.guards = {"G": self.guard_G, "D": self.guard_D}
        self.class_ids = class_set_ids(run_class_set(cfg.data), self.D.num_classes)
        self.num_classes = len(self.class_ids)  # |C| of Eq. 6
        self.samples: Optional[torch.Tensor] = None  # fixed source images of the samples (rank 0)
        self.kid = None  # KID of EMA-G's translations at every sample (rank 0)

    # ------------------------------------------------------------------ data
    def open_streams(self) -> None:
        """x_s and x_t streams from sample ``step · batch_size``; the fixed sample images."""
        src_ds, trg_ds = build_i2i_datasets(self.cfg)
        log.info("I2I: %d source images, %d target images, device %s", len(src_ds), len(trg_ds), self.device)
        start = self.step * self.cfg.i2i.batch_size
        pin = self.cfg.perf.pin_memory and self.device.type == "cuda"
        workers = self.cfg.data.num_workers
        self.streams = {name: SampleStream(ds, stream_seed(self.cfg.run.seed, 5, i), workers, start, pin)
                        for i, (name, ds) in enumerate((("src", src_ds), ("trg", trg_ds)))}
        if dist_utils.is_main_process():
            self.samples = fixed_samples(src_ds)
            # i2i.kid_images; draws no training random numbers
            self.kid = kid_monitor(self.cfg, self.device)

    def train_step(self) -> dict[str, torch.Tensor]:
        """The next batches of x_s (with y_s) and x_t (with ŷ_t when pre-computed), one step."""
        bs, nb = self.cfg.i2i.batch_size, self.device.type == "cuda"
        src, trg = self.streams["src"].take(bs), self.streams["trg"].take(bs)
        return self.step_on_batch(
            src["image"].to(self.device, non_blocking=nb), src["label"].to(self.device, non_blocking=nb),
            trg["image"].to(self.device, non_blocking=nb),
            trg["label"].to(self.device, non_blocking=nb) if "label" in trg else None, self.step,
        )

    # ------------------------------------------------------------------ one step
    def step_on_batch(self, src_image: torch.Tensor, src_label: torch.Tensor, trg_image: torch.Tensor,
                   trg_pseudo: Optional[torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """One D-step then one G-step on a batch; returns the losses as tensors (no sync).

        ``trg_pseudo`` is ŷ_t (pre-computed pseudo labels) or ``None`` with online pseudo labels.
        """
        i2i = self.cfg.i2i
        weights = loss_weights_at(step, i2i)
        src_label = restrict_labels(src_label, self.class_ids)
        self.G.train()
        self.D.train()
        with self.amp_G.autocast():
            fake = self.G(src_image)
            fake_trunk = self.D.trunk_features(fake)  # with G's graph; reused by both steps
        d_losses, trg_pseudo = self._discriminator_step(fake_trunk, trg_image, src_label, trg_pseudo,
                                                        weights, step)
        g_losses = self._generator_step(fake_trunk, src_label, trg_image, weights, step)
        ema_update(self.G_ema, self.G, i2i.ema_decay)
        # detached: logging must not keep the graphs alive
        out = {f"Loss/D/{k}": v.detach() for k, v in d_losses.items()}
        out.update({f"Loss/G/{k}": v.detach() for k, v in g_losses.items()})
        out["Schedule/lr"] = torch.tensor(i2i.lr)
        out["Schedule/lambda_pl"] = torch.tensor(weights.lambda_pl)
        out["Schedule/lambda_cgan"] = torch.tensor(weights.lambda_cgan)
        return out

    def _discriminator_step(self, fake_trunk: torch.Tensor, trg_image: torch.Tensor,
                            src_label: torch.Tensor, trg_pseudo: Optional[torch.Tensor],
                            weights: LossWeights, step: int):
        """L^D (Eq. 7) on D(G(x_s)) with G(x_s) detached and D(x_t); steps D only."""
        self.opt_D.zero_grad(set_to_none=True)
        with self.amp_D.autocast():
            with torch.no_grad():
                real_trunk = self.D.trunk_features(trg_image)
            fake_out, real_out = self._heads_pair(fake_trunk.detach(), tuple(src_label.shape[-2:]),
                                                  real_trunk, tuple(trg_image.shape[-2:]))
            if trg_pseudo is None:  # online pseudo labels: AC head's argmax on x_t, no gradient
                trg_pseudo = real_out.seg.detach().argmax(dim=1)
            trg_pseudo = restrict_labels(trg_pseudo, self.class_ids)
            loss, parts = discriminator_loss(
                fake_out, real_out, src_label, trg_pseudo, lambda_pl=weights.lambda_pl,
                lambda_cgan=weights.lambda_cgan, num_classes=self.num_classes,
                gan_loss=self.cfg.i2i.gan_loss,
            )
        params = self.D.trainable_parameters()
        parts["grad_norm"] = self._backward_and_step(loss, params, self.opt_D, self.amp_D, self.guard_D, step)
        return parts, trg_pseudo

    def _heads_pair(self, fake_trunk: torch.Tensor, fake_size: tuple, real_trunk: torch.Tensor,
                    real_size: tuple):
        """D's trainable parts on fake and real features: one batched pass when sizes agree."""
        if fake_size != real_size or fake_trunk.shape[-2:] != real_trunk.shape[-2:]:
            return self.D.head_outputs(fake_trunk, fake_size), self.D.head_outputs(real_trunk, real_size)
        n = fake_trunk.shape[0]
        both = self.D.head_outputs(torch.cat([fake_trunk, real_trunk]), fake_size)
        return DiscriminatorOutput(both.gan[:n], both.seg[:n]), DiscriminatorOutput(both.gan[n:], both.seg[n:])

    def _generator_step(self, fake_trunk: torch.Tensor, src_label: torch.Tensor,
                        trg_image: torch.Tensor, weights: LossWeights, step: int):
        """L^G (Eq. 9) through the updated D with D's parameters frozen; steps G only."""
        src_size = tuple(src_label.shape[-2:])
        i2i = self.cfg.i2i
        self.opt_G.zero_grad(set_to_none=True)
        self.D.set_trainable(False)  # D is not updated by the generator's objective
        try:
            with self.amp_G.autocast():
                fake_out = self.D.head_outputs(fake_trunk, src_size)
                trg_recon = self.G(trg_image)
                loss, parts = generator_loss(
                    fake_out, src_label, trg_recon, trg_image, lambda_gseg=i2i.lambda_gseg,
                    lambda_cgan=weights.lambda_cgan, lambda_id=i2i.lambda_id,
                    num_classes=self.num_classes, gan_loss=i2i.gan_loss,
                )
            params = list(self.G.parameters())
            parts["grad_norm"] = self._backward_and_step(loss, params, self.opt_G, self.amp_G,
                                                         self.guard_G, step)
        finally:
            self.D.set_trainable(True)
        return parts

    def _backward_and_step(self, loss: torch.Tensor, params: list[torch.Tensor],
                           opt: torch.optim.Optimizer, amp: AmpContext, guard: NonFiniteGuard,
                           step: int) -> torch.Tensor:
        amp.backward(loss)
        _all_reduce_grads(params)
        amp.unscale(opt)
        grad_norm = clip_grad_norm(params, self.cfg.i2i.grad_clip)
        if guard.step_ok(step, loss, grad_norm):
            amp.step(opt)
        elif amp.scaler.is_enabled():
            amp.scaler.update()  # lower the fp16 scale; unscale_ needs an update() before reuse
        return grad_norm

    # ------------------------------------------------------------------ state
    def model_state(self) -> dict:
        return {
            "G": dist_utils.unwrap(self.G).state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "D": self.D.trainable_state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "amp_G": self.amp_G.state_dict(),
            "amp_D": self.amp_D.state_dict(),
        }

    def load_model_state(self, state: dict) -> None:
        dist_utils.unwrap(self.G).load_state_dict(state["G"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.D.load_trainable_state_dict(state["D"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.amp_G.load_state_dict(state.get("amp_G", {}))
        self.amp_D.load_state_dict(state.get("amp_D", {}))

    # ------------------------------------------------------------------ samples & export
    def line_values(self, values: dict[str, float]) -> dict[str, float]:
        return {k: values[k] for k in _LINE_KEYS if k in values}

    def evaluate(self, final: bool = False) -> dict:  # noqa: ARG002 (the same at the last step)
        """Source images and EMA-G's translations: TensorBoard, ``samples/``, KID (rank 0)."""
        if dist_utils.is_main_process():
            grid = pairs_grid(self.samples, self.translate_samples(self.samples))
            self.run.log_image("i2i/source_translated", grid, self.step)
            if self.kid is not None:
                self.run.log_metrics(self.phase, self.step, self.kid(self.translate_samples))
            _save_grid(grid, self.run.path / "samples" / f"step_{self.step:08d}.png")
        dist_utils.barrier()
        return {}

    def finish(self) -> dict:
        """The last samples, EMA-G (``generator_ema.safetensors`` + ``generator.yaml``), Fig. 2 pairs."""
        self.evaluate(final=True)
        # every rank returns the same summary; rank 0 writes what it names
        out = {"generator": str(self.run.path / GENERATOR_WEIGHTS),
               "figure": str(self.run.path / "figures" / "i2i_pairs.png")}
        if dist_utils.is_main_process():
            save_generator(self.G_ema, self.cfg, self.run.path, self.step)
            _final_figure(self, self.cfg, Path(out["figure"]))
            log.info("I2I done: %s", out["generator"])
        dist_utils.barrier()
        return out

    @torch.no_grad()
    def translate_samples(self, images: torch.Tensor, z_seed: int = SAMPLE_Z_SEED) -> torch.Tensor:
        """EMA-G translations of ``images`` with a fixed z and fixed noise (validation samples)."""
        gen = torch.Generator(device=self.device).manual_seed(z_seed)
        z = self.G_ema.sample_z(1, self.device, gen)[0]
        return self.G_ema(images.to(self.device), z, generator=gen)


# ---------------------------------------------------------------------- data
def i2i_data_config(cfg: Config) -> DataConfig:
    """``cfg.data`` with the I2I phase's crop (``i2i.crop_size``, 0 = ``data.crop_size``)."""
    if cfg.i2i.crop_size in (0, cfg.data.crop_size):
        return cfg.data
    return dataclasses.replace(cfg.data, crop_size=cfg.i2i.crop_size)


def build_i2i_datasets(cfg: Config):
    """(source dataset with y_s, target dataset with ŷ_t or unlabelled) for training.

    Target = ``data.target_train_split`` + ``data.target_extra_dirs``, each frame once
    (:func:`sci2i.data.build.build_target_dataset`, the set the pseudo-label phase labels).
    With pre-computed pseudo labels every image is paired with its ŷ_t at
    :func:`sci2i.data.datasets.pseudo_label_path` below ``i2i.pseudo_label_dir``; images without
    one (skipped as unreadable when the labels were written) are left out with a warning.
    """
    data = i2i_data_config(cfg)
    src = build_source_dataset(data, train=True)
    if cfg.i2i.pseudo_labels == "online":
        return src, build_target_dataset(data, data.target_train_split, with_labels=False, train=True)
    if not cfg.i2i.pseudo_label_dir:
        raise UserError(
            "i2i.pseudo_labels=precomputed needs i2i.pseudo_label_dir (trainId PNGs written by "
            "`sci2i pseudo-label`); or use i2i.pseudo_labels=online"
        )
    trg = build_target_dataset(data, data.target_train_split, with_labels=True, train=True,
                               label_dir=cfg.i2i.pseudo_label_dir)
    return src, trg


def fixed_samples(dataset, n: int = 4) -> torch.Tensor:
    """The first ``n`` images of ``dataset`` with fixed augmentation seeds (for samples/figures)."""
    items = [dataset[(i, i)] for i in range(min(n, len(dataset)))]
    return torch.stack([it["image"] for it in items])


def pairs_grid(sources: torch.Tensor, translated: torch.Tensor) -> torch.Tensor:
    """(3, 2H, N·W) image: sources on top, translations below (TensorBoard sample)."""
    top = torch.cat(list(sources.cpu()), dim=2)
    bottom = torch.cat(list(translated.cpu()), dim=2)
    return torch.cat([top, bottom], dim=1).clamp(0, 1)


# ---------------------------------------------------------------------- export
def save_generator(G: Generator, cfg: Config, out_dir: str | Path, step: int) -> Path:
    """``generator_ema.safetensors`` + ``generator.yaml`` (enough to rebuild G) in ``out_dir``."""
    out_dir = Path(out_dir)
    path = out_dir / GENERATOR_WEIGHTS
    save_weights(dist_utils.unwrap(G).state_dict(), path, metadata={"format": "sci2i-generator", "step": step})
    meta = {
        "generator": OmegaConf.to_container(OmegaConf.structured(cfg.generator)),
        "data": {"source_format": cfg.data.source_format, "class_set": cfg.data.class_set},
        "step": step,
    }
    (out_dir / GENERATOR_CONFIG).write_text(yaml.safe_dump(meta, sort_keys=False))
    return path


# ---------------------------------------------------------------------- loop
#: What the interval line of :class:`~sci2i.utils.progress.TrainingLog` shows, in this order.
_LINE_KEYS = ("Loss/D/total", "Loss/D/gan", "Loss/D/seg", "Loss/G/total", "Loss/G/gan", "Loss/G/seg",
              "Loss/G/id", "Schedule/lr", "Schedule/lambda_pl", "Schedule/lambda_cgan")


def train_i2i(cfg: Config, run_dir: str | Path | None = None, resume: bool = False,
              progress: bool = True) -> dict:
    """Train G and D for ``cfg.i2i.steps`` steps into ``run_dir`` (default ``cfg.run.out_dir``).

    Returns ``{"step", "stopped", "run_dir", "generator", "figure"}`` (paths as strings; the
    last two only when it ran to the end); with ``resume`` the run continues exactly from the
    newest checkpoint in ``<run>/checkpoints`` (from scratch when there is none).
    SIGINT/SIGTERM write a checkpoint and return with ``stopped`` True.
    """
    device = resolve_device(cfg.perf.device)
    dist_utils.init_distributed(device.type)
    seed_everything(cfg.run.seed + dist_utils.rank(), cfg.run.deterministic)
    run = RunDir(cfg, run_dir, enabled=dist_utils.is_main_process())
    try:
        trainer = I2ITrainer(cfg, run, device, progress=progress)
        if resume:
            trainer.resume()
        summary = trainer.fit()
    finally:
        run.close()
    return {**summary, "run_dir": str(summary["run_dir"])}


def _save_grid(grid: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.mul(255).round().byte().permute(1, 2, 0).numpy()).save(path)


def _final_figure(trainer: I2ITrainer, cfg: Config, path: Path, n: int = 4) -> Path:
    """Fig. 2-style pairs of whole source images (evaluation scale) with target references.

    The first ``n`` readable images of the datasets training reads: a file training skipped is
    skipped here too (and counted against ``data.max_bad_files``).
    """
    src = build_source_dataset(cfg.data, train=False)
    trg = build_target_dataset(cfg.data, cfg.data.target_train_split, with_labels=False, train=False)
    ledger = BadFileLedger(cfg.data.max_bad_files)
    sources = [item["image"] for item in readable(src, n, ledger)]
    translated = [trainer.translate_samples(x.unsqueeze(0))[0].cpu() for x in sources]
    references = [item["image"] for item in readable(trg, n, ledger)]
    as_hwc = lambda xs: [x.permute(1, 2, 0).numpy() for x in xs]  # noqa: E731
    return make_pairs_figure(as_hwc(sources), as_hwc(translated), path, references=as_hwc(references))
