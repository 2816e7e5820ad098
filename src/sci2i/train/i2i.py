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

Resuming is exact: a checkpoint holds G, EMA-G, D's trainable parts, both optimisers (and
AMP scalers), the step, all RNG states and the resolved config; the data streams
(:class:`sci2i.train.sample_stream.SampleStream`) restart at sample ``step · batch_size``.

Paper -> code: G -> ``trainer.G``, EMA of G -> ``trainer.G_ema``, D -> ``trainer.D``,
L^D -> ``Loss/D/total``, L^G -> ``Loss/G/total`` (see :mod:`sci2i.losses.i2i` for the terms).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import yaml
from omegaconf import OmegaConf

from sci2i.config import Config, to_yaml
from sci2i.config.schema import I2IConfig
from sci2i.eval.kid import kid_monitor
from sci2i.losses.i2i import class_set_ids, discriminator_loss, generator_loss, restrict_labels
from sci2i.models.discriminator import Discriminator, DiscriminatorOutput
from sci2i.models.generator import Generator
from sci2i.train.ema import ema_update, make_ema
from sci2i.train.loop import (
    AmpContext,
    DivergenceError,
    GracefulStop,
    NonFiniteGuard,
    check_divergence_before_resume,
    clip_grad_norm,
    configure_backends,
    make_optimizer,
    prepare_model,
    record_divergence,
)
from sci2i.train.progress import TrainingLog
from sci2i.train.schedules import linear_ramp
from sci2i.utils import distributed as dist_utils
from sci2i.utils.checkpoint import CheckpointManager, save_weights
from sci2i.utils.rundir import RunDir
from sci2i.utils.runtime import resolve_device, rng_state, seed_everything, set_rng_state

log = logging.getLogger("sci2i")

GENERATOR_WEIGHTS = "generator_ema.safetensors"
GENERATOR_CONFIG = "generator.yaml"
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


class I2ITrainer:
    """G, its EMA, D, their optimisers and the alternating D/G step (see module docstring)."""

    def __init__(self, cfg: Config, device: torch.device | str = "cpu") -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        G = Generator(cfg.generator).to(self.device)
        self.D = Discriminator(cfg.discriminator).to(self.device)
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
        self.class_ids = class_set_ids(cfg.data.class_set)
        self.num_classes = len(self.class_ids)  # |C| of Eq. 6

    # ------------------------------------------------------------------ one step
    def train_step(self, src_image: torch.Tensor, src_label: torch.Tensor, trg_image: torch.Tensor,
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
    def state_dict(self) -> dict:
        return {
            "G": dist_utils.unwrap(self.G).state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "D": self.D.trainable_state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "amp_G": self.amp_G.state_dict(),
            "amp_D": self.amp_D.state_dict(),
            "guard": {"G": self.guard_G.state_dict(), "D": self.guard_D.state_dict()},
        }

    def load_state_dict(self, state: dict) -> None:
        dist_utils.unwrap(self.G).load_state_dict(state["G"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.D.load_trainable_state_dict(state["D"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.amp_G.load_state_dict(state.get("amp_G", {}))
        self.amp_D.load_state_dict(state.get("amp_D", {}))
        guards = state.get("guard", {})
        for guard, key in ((self.guard_G, "G"), (self.guard_D, "D")):
            if isinstance(guards.get(key), dict):  # (older checkpoints kept the totals only)
                guard.load_state_dict(guards[key])

    @property
    def in_streak(self) -> bool:
        """A streak of non-finite steps of G or D is going on: write no checkpoint."""
        return self.guard_G.in_streak or self.guard_D.in_streak

    @property
    def streak_start(self) -> int:
        return min(g.streak_start for g in (self.guard_G, self.guard_D) if g.in_streak)

    @torch.no_grad()
    def translate_samples(self, images: torch.Tensor, z_seed: int = SAMPLE_Z_SEED) -> torch.Tensor:
        """EMA-G translations of ``images`` with a fixed z and fixed noise (validation samples)."""
        gen = torch.Generator(device=self.device).manual_seed(z_seed)
        z = self.G_ema.sample_z(1, self.device, gen)[0]
        return self.G_ema(images.to(self.device), z, generator=gen)


# ---------------------------------------------------------------------- data
def _stream_seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, 5, stream]).generate_state(1)[0])


def build_i2i_datasets(cfg: Config):
    """(source dataset with y_s, target dataset with ŷ_t or unlabelled) for training.

    Target = ``data.target_train_split`` + ``data.target_extra_dirs``, each frame once
    (:func:`sci2i.data.build.build_target_dataset`, the set the pseudo-label phase labels).
    With pre-computed pseudo labels every image is paired with its ŷ_t at
    :func:`sci2i.data.datasets.pseudo_label_path` below ``i2i.pseudo_label_dir``; images without
    one (skipped as unreadable when the labels were written) are left out with a warning.
    """
    from sci2i.data.build import build_source_dataset, build_target_dataset
    from sci2i.errors import UserError

    src = build_source_dataset(cfg.data, train=True)
    if cfg.i2i.pseudo_labels == "online":
        return src, build_target_dataset(cfg.data, cfg.data.target_train_split, with_labels=False, train=True)
    if not cfg.i2i.pseudo_label_dir:
        raise UserError(
            "i2i.pseudo_labels=precomputed needs i2i.pseudo_label_dir (trainId PNGs written by "
            "`sci2i pseudo-label`); or use i2i.pseudo_labels=online"
        )
    trg = build_target_dataset(cfg.data, cfg.data.target_train_split, with_labels=True, train=True,
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
#: What the interval line of :class:`~sci2i.train.progress.TrainingLog` shows, in this order.
_LINE_KEYS = ("Loss/D/total", "Loss/D/gan", "Loss/D/seg", "Loss/G/total", "Loss/G/gan", "Loss/G/seg",
              "Loss/G/id", "Schedule/lambda_pl", "Schedule/lambda_cgan")


def _line_values(losses: dict) -> dict:
    return {k: losses[k] for k in _LINE_KEYS if k in losses}


def train_i2i(cfg: Config, run_dir: str | Path | None = None, resume: bool = True,
              progress: bool = True) -> dict:
    """Train G and D for ``cfg.i2i.steps`` steps; returns a summary with the exported paths.

    ``run_dir`` defaults to ``cfg.run.out_dir``. With ``resume`` the newest loadable
    checkpoint in ``run_dir/checkpoints`` is continued exactly. SIGINT/SIGTERM write a
    checkpoint and return (``summary["stopped"] = True``).
    """
    device = resolve_device(cfg.perf.device)
    dist_utils.init_distributed(device.type)
    seed_everything(cfg.run.seed + dist_utils.rank(), cfg.run.deterministic)
    configure_backends(cfg.perf, cfg.run.deterministic)
    main = dist_utils.is_main_process()
    run = RunDir(cfg, run_dir, enabled=main)
    src_ds, trg_ds = build_i2i_datasets(cfg)
    log.info("I2I: %d source images, %d target images, device %s", len(src_ds), len(trg_ds), device)
    trainer = I2ITrainer(cfg, device)
    ckpts = CheckpointManager(run.checkpoints, cfg.run.keep_checkpoints)

    start = 0
    found = None
    if resume:
        check_divergence_before_resume(run.path, to_yaml(cfg), "resume with a lower learning rate "
                                       "(e.g. --resume i2i.lr=…)")
        found = ckpts.load_newest()
    if found is not None:
        state, path = found
        trainer.load_state_dict(state)
        set_rng_state(state["rng"])
        start = int(state["step"])
        if state.get("config") != to_yaml(cfg):
            log.warning("resuming from a checkpoint written with a different config; the new one is used")
        log.info("resumed I2I training at step %d from %s", start, path)
    elif resume:
        log.info("no checkpoint in %s: starting from step 0", ckpts.folder)

    from sci2i.train.sample_stream import SampleStream

    bs, i2i = cfg.i2i.batch_size, cfg.i2i
    pin = cfg.perf.pin_memory and device.type == "cuda"
    src_stream = SampleStream(src_ds, _stream_seed(cfg.run.seed, 0), cfg.data.num_workers, start * bs, pin)
    trg_stream = SampleStream(trg_ds, _stream_seed(cfg.run.seed, 1), cfg.data.num_workers, start * bs, pin)
    samples = fixed_samples(src_ds) if main else None
    # KID of EMA-G's translations at every sample (i2i.kid_images; draws no training random numbers)
    kid = kid_monitor(cfg, device) if main else None

    def save_checkpoint(step: int) -> None:
        if trainer.in_streak:  # the weights may be blowing up: keep the last good checkpoint
            log.warning("I2I step %d: no checkpoint written, non-finite steps in a row", step)
        elif main:
            ckpts.save({**trainer.state_dict(), "step": step, "rng": rng_state(), "config": to_yaml(cfg)}, step)

    step = start
    stopped = False
    try:
        with GracefulStop() as stop, TrainingLog("i2i", i2i.steps, start, progress, device, enabled=main) as bar:
            while step < i2i.steps:
                src, trg = src_stream.take(bs), trg_stream.take(bs)
                nb = device.type == "cuda"
                losses = trainer.train_step(
                    src["image"].to(device, non_blocking=nb), src["label"].to(device, non_blocking=nb),
                    trg["image"].to(device, non_blocking=nb),
                    trg["label"].to(device, non_blocking=nb) if "label" in trg else None, step,
                )
                step += 1
                bar.update(1)
                if step % i2i.log_every == 0 or step == i2i.steps:
                    run.log_metrics("i2i", step, losses)
                    bar.report(step, {**_line_values(losses), "lr": i2i.lr})
                if main and (step % i2i.sample_every == 0 or step == i2i.steps):
                    grid = pairs_grid(samples, trainer.translate_samples(samples))
                    run.log_image("i2i/source_translated", grid, step)
                    if kid is not None:
                        run.log_metrics("i2i", step, kid(trainer.translate_samples))
                    _save_grid(grid, run.path / "samples" / f"step_{step:08d}.png")
                if step % cfg.run.checkpoint_every == 0 or step == i2i.steps or stop.requested:
                    save_checkpoint(step)
                if stop.requested:
                    stopped = True
                    log.warning("I2I training stopped at step %d; resume with --resume", step)
                    break
    except DivergenceError as e:
        if main:
            record_divergence(run.path, e, trainer.streak_start, to_yaml(cfg), ckpts)
        run.close()
        raise
    finally:
        src_stream.close()  # stop the prefetching workers now, not at garbage collection
        trg_stream.close()
    summary: dict = {"step": step, "stopped": stopped, "run_dir": str(run.path)}
    if not stopped:
        # every rank returns the same summary; rank 0 writes what it names
        summary["generator"] = str(run.path / GENERATOR_WEIGHTS)
        summary["figure"] = str(run.path / "figures" / "i2i_pairs.png")
        if main:
            save_generator(trainer.G_ema, cfg, run.path, step)
            _final_figure(trainer, cfg, Path(summary["figure"]))
            log.info("I2I done: %s", summary["generator"])
    run.close()
    dist_utils.barrier()
    return summary


def _save_grid(grid: torch.Tensor, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.mul(255).round().byte().permute(1, 2, 0).numpy()).save(path)


def _final_figure(trainer: I2ITrainer, cfg: Config, path: Path, n: int = 4) -> Path:
    """Fig. 2-style pairs of whole source images (evaluation scale) with target references.

    The first ``n`` readable images of the datasets training reads: a file training skipped is
    skipped here too (and counted against ``data.max_bad_files``).
    """
    from sci2i.data.build import build_source_dataset, build_target_dataset
    from sci2i.data.robust import BadFileLedger, readable
    from sci2i.figures_i2i import make_pairs_figure

    src = build_source_dataset(cfg.data, train=False)
    trg = build_target_dataset(cfg.data, cfg.data.target_train_split, with_labels=False, train=False)
    ledger = BadFileLedger(cfg.data.max_bad_files)
    sources = [item["image"] for item in readable(src, n, ledger)]
    translated = [trainer.translate_samples(x.unsqueeze(0))[0].cpu() for x in sources]
    references = [item["image"] for item in readable(trg, n, ledger)]
    as_hwc = lambda xs: [x.permute(1, 2, 0).numpy() for x in xs]  # noqa: E731
    return make_pairs_figure(as_hwc(sources), as_hwc(translated), path, references=as_hwc(references))
