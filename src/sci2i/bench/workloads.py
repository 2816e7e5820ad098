"""The measured workloads of ``sci2i bench``: one training step of each phase, and the data pipeline.

* ``seg``: :meth:`MeanTeacherTrainer.train_step` as in phase (c) by default (student on
  ``[x_s ‖ G(x_s) ‖ P(x_t)]`` in one forward, teacher on ``x_t``, backward, clip, Adam, EMA),
  with λ_con on from step 0 — the full step of the 30k steps after ``con_start``. The data
  streams are replaced by fixed in-memory batches (pinned on CUDA, copied by the trainer as in
  training), so the figure is the step alone; ``data`` measures the pipeline separately.
  ``--seg-phase a`` drops G(x_s) (phase (a): source + target).
* ``i2i``: :meth:`I2ITrainer.step_on_batch` (G(x_s) and trunk features once, D-step, G-step, EMA
  of G) on fixed batches with pre-computed pseudo labels.
* ``data``: the trainers' own input pipeline (:class:`~sci2i.data.stream.SampleStream`
  over the datasets of :mod:`sci2i.data.build`: decode, resize, crop, flip in DataLoader
  workers), one source and one target stream taking ``batch`` images each per step, plus the
  host-to-device copy on CUDA. Data: ``--data-root`` (a toy-city folder with ``source/`` and
  ``target/``, or ``data.source_root``/``data.target_root`` overrides), else synthetic PNGs
  (:mod:`sci2i.bench.synthetic`) at the profile's image size.
* ``seg-forward`` (``--compare`` only): the student's forward+backward on the three inputs as
  three separate passes (baseline) vs one concatenated pass (what the trainer does).

Weights are random (no download). Profiles (:func:`get_profile`): ``paper`` = the
``gta5-cityscapes`` preset (VGG16, 384² crops); ``paper-r101`` = ``gta5-cityscapes-r101``
(DeepLab-v2 ResNet-101 segmenter; the I2I step is the paper's, D keeps its VGG16 trunk);
``toycity`` = the ``toycity-seg`` and ``toycity-i2i`` presets (the CPU demo's sizes:
EfficientNet-Lite0, 256×128 images, 128² crops), or the equivalent overrides below if the
package has no such presets.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from sci2i.bench.measure import (
    Result,
    allocated_mib,
    count_flops,
    interleaved_rounds,
    peak_memory,
    reset_peak_memory,
    split_steps,
    synchronize,
)
from sci2i.config import Config, load_config
from sci2i.config.loader import list_presets

#: Toy-city CPU sizes used when the package has no ``toycity`` preset (the demo's scale:
#: 256×128 images, EfficientNet-Lite0 for the segmenter and D's frozen trunk, a slim G).
TOYCITY_FALLBACK = [
    "model.backbone=efficientnet_lite0", "discriminator.trunk=efficientnet_lite0",
    "data.long_side=256", "data.crop_size=128", "data.eval_long_side=256", "data.num_workers=2",
    "model.aspp_rates=[2,3,5,6]", "generator.channels=[16,32,64,64]", "generator.latent_dim=64",
    "generator.style_dim=64", "generator.mapping_layers=4", "discriminator.channels=64",
    "seg.batch_size=2", "i2i.batch_size=2",
]


@dataclass(frozen=True)
class Profile:
    name: str
    presets: dict  # phase -> preset name (None: schema defaults + overrides)
    overrides: tuple[str, ...]
    image_size: tuple[int, int]  # (W, H) of synthetic data-pipeline images

    def preset(self, phase: str) -> Optional[str]:
        return self.presets.get(phase, self.presets.get("seg"))


def _toycity_profile() -> Profile:
    have = set(list_presets())
    if {"toycity-seg", "toycity-i2i"} <= have:
        return Profile("toycity", {"seg": "toycity-seg", "i2i": "toycity-i2i"}, (), (256, 128))
    return Profile("toycity", {}, tuple(TOYCITY_FALLBACK), (256, 128))


def get_profile(name: str) -> Profile:
    if name == "paper":
        return Profile("paper", {"seg": "gta5-cityscapes"}, ("data.target_extra_dirs=[]",), (2048, 1024))
    if name == "paper-r101":
        return Profile("paper-r101", {"seg": "gta5-cityscapes-r101"}, ("data.target_extra_dirs=[]",),
                       (2048, 1024))
    if name == "toycity":
        return _toycity_profile()
    raise ValueError(f"unknown bench profile {name!r}: 'paper', 'paper-r101' or 'toycity'")


#: Random init everywhere: the bench downloads and reads no weights.
RANDOM_INIT = ["model.weights=", "discriminator.trunk_weights=", "model.init_checkpoint="]

BASELINE_PERF = ["perf.amp='off'", "perf.channels_last=false", "perf.cudnn_benchmark=false",
                 "perf.compile=false", "perf.fused_optim=false", "perf.pin_memory=false",
                 "data.num_workers=0"]


def make_config(profile: Profile, phase: str, variant: str, batch: Optional[int], crop: Optional[int],
                device: str, amp: str, compile: bool, workers: Optional[int],
                extra: list[str]) -> Config:
    """The resolved config of one variant ("baseline" = fp32 eager, "optimised", "as-configured")."""
    ov = list(profile.overrides) + RANDOM_INIT + [f"perf.device={device}"]
    if batch:
        ov += [f"seg.batch_size={batch}", f"i2i.batch_size={batch}"]
    if crop:
        ov += [f"data.crop_size={crop}"]
    if variant == "baseline":
        ov += BASELINE_PERF
    else:
        ov += [f"perf.amp='{amp}'", f"perf.compile={str(compile).lower()}"]
        if variant == "optimised":
            ov += ["perf.channels_last=true", "perf.cudnn_benchmark=true", "perf.fused_optim=true",
                   "perf.pin_memory=true"]
        if workers is not None:
            ov += [f"data.num_workers={workers}"]
    ov += list(extra)
    return load_config(profile.preset(phase), ov)


def set_tf32(enabled: bool) -> None:
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def perf_settings(cfg: Config) -> dict:
    return {**dataclasses.asdict(cfg.perf), "num_workers": cfg.data.num_workers,
            "cache": bool(cfg.data.cache_dir)}


# ----------------------------------------------------------------------------- fixed batches
class FixedStream:
    """Stands in for a :class:`SampleStream`: ``take(n)`` returns the first n of a fixed batch."""

    def __init__(self, batch: dict) -> None:
        self.batch = batch
        self.consumed = 0

    def take(self, n: int) -> Optional[dict]:
        if n <= 0:
            return None
        self.consumed += n
        return {k: v[:n] for k, v in self.batch.items()}


def random_batch(n: int, crop: int, labelled: bool, pin: bool, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    batch = {"image": torch.rand((n, 3, crop, crop), generator=g)}
    if labelled:
        label = torch.randint(0, 19, (n, crop, crop), generator=g)
        label[:, :, : crop // 16] = 255  # some ignore pixels, as in real labels
        batch["label"] = label
    if pin:
        batch = {k: v.pin_memory() for k, v in batch.items()}
    return batch


# ----------------------------------------------------------------------------- workloads
@dataclass
class Workload:
    step: Callable[[], object]
    images_per_step: int
    batch: int
    crop: int
    info: dict


def seg_workload(cfg: Config, device: torch.device, tmp: Path, phase: str = "c") -> Workload:
    from sci2i.train.mean_teacher import MeanTeacherTrainer, batch_plan
    from sci2i.utils.rundir import RunDir

    class BenchSegTrainer(MeanTeacherTrainer):
        def _build_val_set(self):  # the bench never evaluates
            return None

    translated = tmp / "translated"
    translated.mkdir(parents=True, exist_ok=True)
    seg = dataclasses.replace(cfg.seg, con_start=0, lambda_con=cfg.seg.lambda_con or 10.0,
                              translated_root=str(translated) if phase == "c" else "")
    cfg = dataclasses.replace(cfg, seg=seg)
    trainer = BenchSegTrainer(cfg, RunDir(cfg, tmp / "run", enabled=False), device, progress=False)
    b, crop = cfg.seg.batch_size, cfg.data.crop_size
    pin = device.type == "cuda"
    trainer.streams = {
        "src": FixedStream(random_batch(b, crop, True, pin, 1)),
        "translated": FixedStream(random_batch(b, crop, True, pin, 2)),
        "trg": FixedStream(random_batch(b, crop, False, pin, 3)),
    }
    plan = batch_plan(0, cfg)

    def step():
        parts = trainer.train_step()
        trainer.step += 1
        return parts

    n = plan.src + plan.translated + plan.trg
    return Workload(step, n, b, crop, {
        "seg_phase": phase, "student_images": n, "teacher_images": plan.trg,
        "backbone": cfg.model.backbone,
    })


def i2i_workload(cfg: Config, device: torch.device, tmp: Path) -> Workload:
    from sci2i.train.i2i import I2ITrainer, i2i_data_config
    from sci2i.utils.rundir import RunDir

    trainer = I2ITrainer(cfg, RunDir(cfg, tmp / "run", enabled=False), device)
    b, crop = cfg.i2i.batch_size, i2i_data_config(cfg).crop_size
    src = random_batch(b, crop, True, False, 1)
    trg = random_batch(b, crop, True, False, 2)
    cl = cfg.perf.channels_last and device.type == "cuda"

    def dev(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device)
        return x.contiguous(memory_format=torch.channels_last) if cl and x.dim() == 4 else x

    src_image, src_label, trg_image = dev(src["image"]), dev(src["label"]), dev(trg["image"])
    # pre-computed pseudo labels are an input; online ones come from D's AC head (None)
    trg_label = dev(trg["label"]) if cfg.i2i.pseudo_labels == "precomputed" else None
    state = {"step": 0}

    def step():
        out = trainer.step_on_batch(src_image, src_label, trg_image, trg_label, state["step"])
        state["step"] += 1
        return out

    return Workload(step, 2 * b, b, crop, {"trunk": cfg.discriminator.trunk,
                                            "pseudo_labels": cfg.i2i.pseudo_labels,
                                            "generator_channels": list(cfg.generator.channels)})


def seg_forward_workload(cfg: Config, device: torch.device, concat: bool) -> Workload:
    """Student forward+backward on x_s, G(x_s), P(x_t): three passes or one concatenated."""
    from sci2i.losses.segmentation import cross_entropy
    from sci2i.models.deeplab import build_deeplab
    from sci2i.train.loop import AmpContext, prepare_model

    model = prepare_model(build_deeplab(cfg.model), dataclasses.replace(cfg.perf, compile=False), device).train()
    amp = AmpContext(cfg.perf, device)
    b, crop = cfg.seg.batch_size, cfg.data.crop_size
    cl = cfg.perf.channels_last and device.type == "cuda"
    parts = []
    for seed in (1, 2, 3):
        x = random_batch(b, crop, True, False, seed)
        img = x["image"].to(device)
        parts.append((img.contiguous(memory_format=torch.channels_last) if cl else img, x["label"].to(device)))

    def step():
        model.zero_grad(set_to_none=True)
        with amp.autocast():
            if concat:
                logits = model(torch.cat([p[0] for p in parts])).split(b)
            else:
                logits = [model(p[0]) for p in parts]
        loss = sum(cross_entropy(lg, p[1]) for lg, p in zip(logits, parts))
        loss.backward()

    return Workload(step, 3 * b, b, crop, {"concatenated": concat})


def data_workload(cfg: Config, device: torch.device, tmp: Path, profile: Profile,
                  data_root: Optional[str], n_images: int, cache: bool) -> Workload:
    from sci2i.data.build import build_source_dataset, build_target_dataset
    from sci2i.data.stream import SampleStream

    data = cfg.data
    if data_root:
        root = Path(data_root)
        data = dataclasses.replace(data, source_root=str(root / "source"), target_root=str(root / "target"))
        source = "toy-city/real folder " + str(root)
    elif data.source_root and data.target_root and Path(data.source_root).is_dir():
        source = f"{data.source_root} + {data.target_root}"
    else:
        from sci2i.bench.synthetic import write_bench_data

        w, h = profile.image_size
        roots = write_bench_data(tmp.parent / f"data-{w}x{h}-{n_images}", n_images, w, h)
        data = dataclasses.replace(data, source_format="gta5", source_root=str(roots["source"]),
                                   target_root=str(roots["target"]))
        source = f"synthetic {w}x{h} PNGs, {n_images} per domain"
    info: dict = {"data": source, "cache": cache}
    if cache:
        from sci2i.data.cache import fill_cache

        data = dataclasses.replace(data, cache_dir=str(tmp / "cache"))
    data = dataclasses.replace(data, target_extra_dirs=[])
    src_ds = build_source_dataset(data, train=True)
    trg_ds = build_target_dataset(data, data.target_train_split, with_labels=False, train=True)
    if cache:
        t0 = time.perf_counter()
        inner = [getattr(d, "dataset", d) for d in (src_ds, trg_ds)]
        filled = sum(fill_cache(d, data.num_workers) for d in inner)
        info["cache_fill_s"] = time.perf_counter() - t0
        info["cache_filled_images"] = filled
    b = cfg.seg.batch_size
    pin = cfg.perf.pin_memory and device.type == "cuda"
    streams = [SampleStream(ds, seed, data.num_workers, 0, pin) for seed, ds in ((1, src_ds), (2, trg_ds))]

    def step():
        out = [s.take(b) for s in streams]
        if device.type == "cuda":
            out = [{k: v.to(device, non_blocking=True) for k, v in o.items() if torch.is_tensor(v)} for o in out]
        return out

    info["num_workers_per_stream"] = data.num_workers
    info["streams"] = 2
    return Workload(step, 2 * b, b, cfg.data.crop_size, info)


# ----------------------------------------------------------------------------- measuring
def apply_backends(cfg: Config, variant: str) -> None:
    """The process-wide backend flags of one variant (set again before each of its rounds).

    cuDNN autotuning and TF32 are global switches, and a trainer sets them when it is built,
    so interleaved variants must each get theirs back: baseline = fp32 (no TF32, no autotuning).
    """
    from sci2i.train.loop import configure_backends

    configure_backends(cfg.perf, cfg.run.deterministic)
    if variant == "baseline":
        set_tf32(False)


def measure(phase: str, works: dict[str, tuple[Config, Workload]], device: torch.device, steps: int,
            rounds: int, warmup: int, flops: bool = True) -> list[Result]:
    """Warm up and count one step's FLOPs per variant, then time them interleaved round by round.

    ``works`` maps variant name -> (config, workload), all built beforehand. ``steps`` timed
    steps per variant are spread over ``rounds`` rounds (:func:`~sci2i.bench.measure.split_steps`,
    :func:`~sci2i.bench.measure.interleaved_rounds`). On CUDA a variant's peak memory is the
    peak during its rounds less what the other variants' live tensors hold; on CPU it is the
    process's peak RSS, shared by all variants of the process.
    """
    results: dict[str, Result] = {}
    resident: dict[str, float] = {}
    held = allocated_mib(device)
    for variant, (cfg, work) in works.items():
        apply_backends(cfg, variant)
        results[variant] = Result(phase=phase, variant=variant, device=str(device), batch=work.batch,
                                  crop=work.crop, images_per_step=work.images_per_step, warmup=warmup,
                                  settings={**perf_settings(cfg), **work.info})
        for _ in range(warmup):
            work.step()
        if flops:
            results[variant].flops_per_step = count_flops(work.step)
        synchronize(device)
        now = allocated_mib(device)
        resident[variant], held = now - held, now
    if steps <= 0:
        return [r.finish(None, peak_memory(device)) for r in results.values()]
    peaks: dict[str, float] = {}

    def before(variant: str) -> None:
        apply_backends(works[variant][0], variant)
        reset_peak_memory(device)

    def after(variant: str) -> None:
        mib, _ = peak_memory(device)
        if device.type == "cuda":
            mib -= sum(v for name, v in resident.items() if name != variant)
        peaks[variant] = max(peaks.get(variant, 0.0), mib)

    times = interleaved_rounds({v: w.step for v, (_, w) in works.items()}, split_steps(steps, rounds),
                               sync=lambda: synchronize(device), before=before, after=after)
    kind = peak_memory(device)[1] + (" less the other variants' live tensors" if device.type == "cuda"
                                     and len(works) > 1 else "")
    return [results[v].finish(times[v], (peaks[v], kind)) for v in works]
